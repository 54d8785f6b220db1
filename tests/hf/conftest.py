import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_terminal_summary(terminalreporter):
    """Prints every rotation the oracle suite ran (and what rotq refused), and writes them as JSON
    to $ROTQ_HF_REPORT when set."""
    results = []
    for module in ("test_hf_oracle", "test_compressed_tensors"):
        mod = sys.modules.get(module)
        results += getattr(mod, "RESULTS", [])
    if not results:
        return
    tr = terminalreporter
    tr.section("rotq vs transformers: every rotation")
    worst = {}
    for r in results:
        rel = r.get("rel")
        line = f"{r['family']:<11} {r['config']:<34} {r['mode']:<13} online={r['online']:<9} {r['status']:<8}"
        if rel is not None:
            line += f" rel={rel:.2e}"
            if r.get("argmax") is not None:
                line += f" argmax={100 * r['argmax']:.0f}%"
            if "rel_no_hooks" in r:
                line += f" (without hooks {r['rel_no_hooks']:.2e})"
            if "negative" not in r["config"]:
                worst[r["family"]] = max(worst.get(r["family"], 0.0), rel)
        elif r.get("note"):
            line += f" {r['note'][:150]}"
        tr.write_line(line)
    tr.section("largest relative logit error per family")
    for family, rel in worst.items():
        tr.write_line(f"{family:<11} {rel:.2e}")
    if os.environ.get("ROTQ_HF_REPORT"):
        with open(os.environ["ROTQ_HF_REPORT"], "w") as f:
            json.dump(results, f, indent=1)
