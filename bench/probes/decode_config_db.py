"""Writes a tuning database of one decode entry that forces a launch configuration on this GPU, so
that bench/decode.py --tuning-db times it beside the heuristic default in one run (a tuning choice,
such as the cluster selection, against the default path). The entry's buckets are the nearest for
every shape of the op, so it applies to all of them.

    python3 bench/probes/decode_config_db.py --out /tmp/ssp1.json select_split=1
    python3 bench/decode.py --shapes 1x32K 1x128K --tuning-db /tmp/ssp1.json
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import topkattn  # noqa: E402

# DecodeConfig::text()'s short names (codegen/decode_spec.cpp) and the database's field names.
FIELDS = {"st": "score_threads", "sr": "score_row_tile", "ss": "select_threads", "sc": "select_capacity",
          "at": "attend_threads", "ac": "attend_chunk", "sw": "score_waves", "am": "attend_min_split",
          "ssp": "select_split"}


def default_config(args):
    """The heuristic default of the shape, read from a plan's spec text (no database)."""
    rt = topkattn.Runtime(tuning_db="", compile_only_sm=args.compile_only_sm)
    plan = rt.plan_decode(args.group * 8, 8, args.head_dim, top_k=args.top_k, select=args.select,
                          max_batch=1, max_seq_len=32768)
    pairs = dict(kv.split("=") for kv in plan.spec.split(";") if "=" in kv)
    return {name: int(pairs[short]) for short, name in FIELDS.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--group", type=int, default=4)
    p.add_argument("--top-k", type=int, default=2048)
    p.add_argument("--select", choices=["head", "group"], default="head")
    p.add_argument("--compile-only-sm", type=int, default=0, help="no GPU: print the default config and stop")
    p.add_argument("fields", nargs="*", help="NAME=VALUE: config fields that differ from the default")
    args = p.parse_args()
    config = default_config(args)
    if args.compile_only_sm:
        print(json.dumps(config))
        return
    for f in args.fields:
        name, value = f.split("=")
        if name not in config:
            raise SystemExit(f"unknown config field {name!r} (one of {', '.join(config)})")
        config[name] = int(value)
    import torch  # the device's name and SM count, as the runtime reads them

    props = torch.cuda.get_device_properties(0)
    entry = {"device": {"name": torch.cuda.get_device_name(0), "sm": props.major * 10 + props.minor,
                        "sm_count": props.multi_processor_count},
             "op": "decode", "dtype": "bf16", "head_dim": args.head_dim, "top_k": args.top_k,
             "group": args.group, "q_len": 1, "select": args.select, "page_size": 0,
             "seq_bucket": 32768, "batch_bucket": 1, "config": config, "time_us": 0.0,
             "default_time_us": 0.0, "version": topkattn.version()}
    with open(args.out, "w") as f:
        json.dump({"format": 2, "entries": [entry]}, f, indent=1)


if __name__ == "__main__":
    main()
