"""Does bf16 training move a chapter's numbers beyond their seed-to-seed spread? One watermark per
chapter (the comparison's entry for it, at the comparison's settings) embedded with owner seeds
0, 1, 2 in float32 and in bfloat16 (autocast + channels-last; only on a CPU with native bf16), then
its test accuracy and its key's hit rate compared with the float32 seeds' range. Prints both tables
and writes them as JSON (--json). Usage: python scripts/precision_check.py [--profile default]"""
import argparse
import json
import sys
import time

from wmlib import compare, data, schemes, settings, train
from wmlib.zoo import Zoo

ONE_PER_CHAPTER = ["zhang-content", "namba-proposal", "li2019", "gradsigns", "fc-invisible"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--entries", nargs="+", default=ONE_PER_CHAPTER)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--json", help="write the runs and the verdicts here")
    args = parser.parse_args()
    if not train.native_bf16():
        print("error: this CPU has no native bf16 (AMX or AVX-512 BF16): nothing to compare", file=sys.stderr)
        return 2
    knobs = settings.resolve("comparison", args.profile, entries=args.entries)
    # what the clean zoo decides, as the comparison settles it (the function-coupled target)
    schemes.settle(knobs["entries"], knobs["schemes"], Zoo.for_chapter(knobs, progress=False),
                   data.task_splits(knobs, seed=knobs["seeds"][0]), knobs["seeds"][0])
    t0 = time.time()
    runs = compare.precision_runs(args.entries, args.seeds, compare.make_context(knobs))
    spread = compare.precision_spread(runs)
    print(runs.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(spread.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"== {len(runs)} embeddings in {time.time() - t0:.0f} s; bf16 within the fp32 seed spread: "
          f"{int(spread['within spread'].sum())} of {len(spread)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"profile": args.profile, "runs": runs.to_dict("records"), "spread": spread.to_dict("records")},
                      fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
