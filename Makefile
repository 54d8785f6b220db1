# Convenience front end for CMake. The two commands of the README:
#   make demo   — install dependencies, build, rotate the bundled model and check equivalence
#   make test   — install dependencies, build, run the test suite
#   make install — build, then install rotq, librotq.so, rotq.h and rotq.pc under PREFIX
#                  (default /usr/local; DESTDIR is honoured for staged installs)
# and for developers: make format (apply .clang-format to every C file git tracks)
BUILD ?= build
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local

.PHONY: all deps build demo test install format clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)/rotq

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

install: build
	@cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@DESTDIR=$(DESTDIR) cmake --install $(BUILD)

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
