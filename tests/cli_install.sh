#!/usr/bin/env bash
# `cmake --install` (what `make install` runs) into a scratch DESTDIR: the rotq binary, librotq.so
# (.so.0 soname), rotq.h and rotq.pc land under the configured prefix; librotq.so exports only
# rotq_ symbols (`nm -D --defined-only`); a small C program compiled and linked with
# `pkg-config --cflags --libs rotq` against the staged install runs rotq_rotate and writes the same
# model.safetensors as the rotq CLI. Skipped (77) where nm, pkg-config or cc is missing.
. "$ROTQ_SOURCE_DIR/tests/support/cli_test.sh" cli_install
BUILD=$(dirname "$ROTQ")
for tool in nm pkg-config cc; do
  command -v "$tool" >/dev/null || { echo "SKIP: cli_install: no $tool"; exit 77; }
done

STAGE=$SCRATCH/stage
expect 0 "" -- env DESTDIR="$STAGE" cmake --install "$BUILD"
PREFIX=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")
PC=$(find "$STAGE" -name rotq.pc)
[ -n "$PC" ] || { fail "no rotq.pc under $STAGE"; finish; }
LIBDIR=$(dirname "$(dirname "$PC")")
for f in "$STAGE$PREFIX/bin/rotq" "$STAGE$PREFIX/include/rotq.h" "$LIBDIR/librotq.so.0" "$LIBDIR/librotq.so"; do
  [ -e "$f" ] || fail "make install did not install $f"
done
expect 0 "SONAME.*librotq\.so\.0" -- readelf -d "$LIBDIR/librotq.so"

# Only rotq_ symbols exported: the three of include/rotq.h at least, nothing else.
SYMS=$(nm -D --defined-only "$LIBDIR/librotq.so" | awk '{print $3}')
OTHER=$(grep -v '^rotq_' <<<"$SYMS")
[ -z "$OTHER" ] || fail "librotq.so exports symbols without the rotq_ prefix: $(head -5 <<<"$OTHER")"
for s in rotq_version rotq_rotate_default_options rotq_rotate; do
  grep -qx "$s" <<<"$SYMS" || fail "librotq.so does not export $s"
done
# Every ROTQ_API declaration of rotq.h is exported.
for s in $(grep '^ROTQ_API' "$ROOT/include/rotq.h" | grep -o 'rotq_[a-z0-9_]*(' | tr -d '('); do
  grep -qx "$s" <<<"$SYMS" || fail "rotq.h declares $s ROTQ_API, librotq.so does not export it"
done

# A C program built against the staged install through pkg-config.
cat >"$SCRATCH/use_rotq.c" <<'C'
#include <rotq.h>
#include <stdio.h>
int main(int argc, char **argv) {
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = argv[1];
  o.output_dir = argv[2];
  o.quiet = 1;
  rotq_error err;
  if (argc != 3 || rotq_rotate(&o, &err) != 0) {
    fprintf(stderr, "use_rotq: %s\n", argc == 3 ? err.message : "usage: use_rotq MODEL OUTPUT");
    return 1;
  }
  printf("rotq %s: rotated %s\n", rotq_version(), argv[2]);
  return 0;
}
C
FLAGS=$(PKG_CONFIG_SYSROOT_DIR="$STAGE" PKG_CONFIG_PATH="$(dirname "$PC")" pkg-config --cflags --libs rotq) ||
  fail "pkg-config rotq failed"
SAN=() # a sanitized build (scripts/sanitize.sh): its librotq.so needs the program built likewise
ldd "$LIBDIR/librotq.so" | grep -q libasan && SAN=(-fsanitize=address,undefined)
expect 0 "" -- cc -std=c11 -Wall -Werror "${SAN[@]}" "$SCRATCH/use_rotq.c" -o "$SCRATCH/use_rotq" $FLAGS
expect 0 "^rotq 0\.1\.0: rotated" -- env LD_LIBRARY_PATH="$LIBDIR" "$SCRATCH/use_rotq" "$MODEL" "$SCRATCH/lib_out"
expect 0 "librotq\.so\.0 => $LIBDIR/librotq\.so\.0" -- env LD_LIBRARY_PATH="$LIBDIR" ldd "$SCRATCH/use_rotq"
expect 0 "" -- "$STAGE$PREFIX/bin/rotq" rotate --quiet --model "$MODEL" --output "$SCRATCH/cli_out"
cmp -s "$SCRATCH/lib_out/model.safetensors" "$SCRATCH/cli_out/model.safetensors" ||
  fail "the pkg-config-built program and the installed rotq wrote different model.safetensors"
finish
