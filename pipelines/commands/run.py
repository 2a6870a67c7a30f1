"""`hubert run` and `hubert demo`: both iterations, exports and the report as one resumable job."""
from __future__ import annotations

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "run",
                    "Run the whole recipe from a config: data -> MFCC teacher -> iteration 1 -> layer teacher "
                    "-> iteration 2 -> Hugging Face exports -> quality report. Finished stages are skipped; a "
                    "stage whose settings or inputs changed is redone with everything after it; rerun after a "
                    "crash to continue.",
                    "hubert run demo work_dir=work/demo iteration1.num_units=50 --until it1-train\n"
                    "hubert run my-language.toml audio_dir=/data/my-language   # your own copy of a config")
    p.add_argument("config", help="a shipped config's name (`hubert configs` lists them) or a TOML file; "
                   "an existing file wins over a name")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. iteration2.layer=9")
    add_stage_range(p)
    p.set_defaults(func=run)
    d = add_command(subparsers, "demo",
                    "The end-to-end demo on the CPU: 0.5 h of built-in speech, a tiny model, both iterations, "
                    "exports and a summary (the shipped config `demo`).",
                    "hubert demo work_dir=work/demo")
    d.add_argument("overrides", nargs="*", metavar="key=value")
    add_stage_range(d)
    d.set_defaults(func=demo)


def add_stage_range(p) -> None:
    p.add_argument("--until", help="stop after this stage")
    p.add_argument("--from", dest="start", help="rerun from this stage on, even if done")


def run(args) -> int:
    from pipelines.run_config import load_config

    return run_pipeline(load_config(args.config, args.overrides), args.start, args.until)


def demo(args) -> int:
    from pipelines.run_config import demo_config

    return run_pipeline(demo_config(args.overrides), args.start, args.until)


def run_pipeline(config, start=None, until=None) -> int:
    from pipelines.iterations import build_stages
    from pipelines.summary import summary
    from pipelines.stages import run_stages

    run_stages(build_stages(config), config.work_dir, start, until)
    if until is None:
        print(summary(config.work_dir))
    return 0
