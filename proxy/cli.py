"""The ``unlearn-proxy`` command: serve, check-config, bench."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from importlib.resources import files
from pathlib import Path

import yaml

from proxy.core.config import Config, load_config, parse_config
from proxy.core.errors import ConfigError
from proxy.core.redaction import install_log_redaction

DEFAULT_CONFIG_NAME = "default_config.yaml"


def default_config() -> Config:
    """The built-in config: the embedded Gemma 3 270M model and the demo policy."""
    text = files("proxy").joinpath(DEFAULT_CONFIG_NAME).read_text(encoding="utf-8")
    return parse_config(yaml.safe_load(text), source=f"<built-in {DEFAULT_CONFIG_NAME}>")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from proxy.header_timeout import header_timeout_protocol
    from proxy.server import create_app

    path = Path(args.config) if args.config else None
    config = load_config(path) if path else default_config()
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    app = create_app(config, config_path=path, watch=args.watch)
    protocol = header_timeout_protocol(lambda: app.state.holder.current.config.server.header_timeout_s)
    uvicorn.run(app, host=host, port=port, log_level=args.log_level, access_log=False, http=protocol)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from proxy.report import describe_config

    config = load_config(args.file)
    print(describe_config(config, base_dir=Path(args.file).parent, compile_policies=args.compile))
    return 0


# The comparison harness is not part of the product: the CLI finds it by name, on first use.
BENCH_ENTRY = "benchmarks.harness.run:run_from_file"


def _bench(args: argparse.Namespace) -> int:
    module, _, attr = BENCH_ENTRY.partition(":")
    run_from_file = getattr(importlib.import_module(module), attr)
    run_from_file(args.config, data_dir=args.data_dir, out_dir=args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unlearn-proxy",
        description="An OpenAI-compatible proxy that makes a model behave as if it had forgotten.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the OpenAI-compatible API")
    serve.add_argument("--config", help="YAML config (default: the embedded model + demo policy)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-watch", dest="watch", action="store_false",
                       help="do not reload when the config file changes (SIGHUP still reloads)")
    serve.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a config and print it resolved")
    check.add_argument("file")
    check.add_argument("--no-compile", dest="compile", action="store_false",
                       help="skip compiling policies (calibration, demonstrations)")
    check.set_defaults(func=_check_config)
    bench = sub.add_parser("bench", help="run the comparison harness")
    bench.add_argument("--config", required=True, help="bench YAML")
    bench.add_argument("--data-dir", help="benchmark data (default: $UNLEARN_DATA_DIR or ../shared/data)")
    bench.add_argument("--out", help="output directory (overrides the bench config)")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    level: int = getattr(logging, getattr(args, "log_level", "info").upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()  # keys out of every log line, the bench harness's too
    # httpx logs every request at INFO (remote embedders): one line per call is noise (and CPU).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, level))
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
