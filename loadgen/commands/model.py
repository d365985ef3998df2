"""``loadgen model add``: an ONNX file deployed into a model repository, optionally checked live."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadgen.commands import arguments
from loadgen.commands.shared import run_async, stdout_console
from loadgen.errors import EXIT_MISMATCH, EXIT_OK

if TYPE_CHECKING:
    from loadgen.deploy.onnx_signature import OnnxSignature

EXAMPLES = """examples:
  loadgen model add resnet.onnx --name rnxt --max-batch-size 64 --dynamic-batching-delay 100us --instances 2
  loadgen model add resnet.onnx --name rnxt_fp16 --max-batch-size 64 --fp16 --validate
  loadgen model add resnet.onnx --name rnxt --backend onnxruntime --gpu      for a GPU Triton image
"""


def register(sub: Any) -> None:
    """Add ``model add`` to the CLI's sub-parsers."""
    model = sub.add_parser("model", help="deploy a model into a model repository")
    actions = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="write a model repository entry (config.pbtxt and version 1) from an ONNX file",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("onnx", type=arguments.existing_file, metavar="FILE.onnx", help="the ONNX model")
    add.add_argument("--name", type=arguments.model_name, required=True, help="the model's name in Triton")
    add.add_argument(
        "--model-repository",
        type=arguments.existing_folder,
        default=None,
        help="the repository to write into (default: ./model_repository, else the bundled one)",
    )
    add.add_argument(
        "--backend",
        choices=("python", "onnxruntime", "tensorrt"),
        default=None,
        help="python: the Python backend running onnxruntime (what the embedded CPU server runs; "
        "default); onnxruntime: Triton's ONNX Runtime backend; tensorrt: a TensorRT plan (GPU)",
    )
    add.add_argument("--tensorrt", action="store_true", help="the same as --backend tensorrt")
    add.add_argument(
        "--max-batch-size",
        type=arguments.level,
        default=0,
        help="the largest batch Triton forms (default 0: no batching; the graph's first dimension "
        "must be open)",
    )
    add.add_argument(
        "--dynamic-batching-delay",
        type=arguments.microseconds,
        default=None,
        metavar="DELAY",
        help="turn on dynamic batching, waiting up to DELAY (100us, 0.5ms; a plain number is "
        "microseconds) for a batch to fill (default: off)",
    )
    add.add_argument(
        "--instances", type=arguments.count, default=1, help="instances of the model (default 1)"
    )
    add.add_argument("--gpu", action="store_true", help="instances on the GPU (default: on the CPU)")
    add.add_argument(
        "--fp16",
        action="store_true",
        help="FP16 weights and arithmetic (inputs and outputs stay FP32); a TensorRT plan built in FP16",
    )
    add.add_argument("--replace", action="store_true", help="write over a model of that name")
    add.add_argument(
        "--validate",
        action="store_true",
        help="load the model and check its answers against the ONNX file run locally (on the server "
        "at -u, which must run with --model-control-mode=explicit; without -u, on the embedded server)",
    )
    add.add_argument(
        "-u",
        "--url",
        type=arguments.text,
        default=None,
        help="with --validate: a running server's gRPC address (default: start the embedded server)",
    )
    add.set_defaults(handler=cmd_model_add)


def cmd_model_add(args: argparse.Namespace) -> int:
    from loadgen.deploy.config_text import DeployOptions
    from loadgen.deploy.repository_entry import add_model
    from loadgen.server.install import default_model_repository

    options = DeployOptions(
        name=args.name,
        backend="tensorrt" if args.tensorrt else args.backend or "python",
        max_batch_size=args.max_batch_size,
        queue_delay_us=args.dynamic_batching_delay,
        instances=args.instances,
        gpu=args.gpu,
    )
    repository = (args.model_repository or default_model_repository()).absolute()
    console = stdout_console()
    deployed = add_model(args.onnx, repository, options, fp16=args.fp16, replace=args.replace)
    written = ", ".join(str(f.relative_to(deployed.folder)) for f in deployed.files)
    console.print(f"wrote {deployed.folder}: {written}", highlight=False)
    console.print(deployed.config_text, highlight=False, markup=False, end="")
    if not args.validate:
        return EXIT_OK
    return run_async(_validate(args, options.backend, repository, deployed.signature))


@contextlib.contextmanager
def _embedded(args: argparse.Namespace, repository: Path) -> Iterator[str]:
    """An embedded server with only this model loaded; its gRPC address."""
    from loadgen.server import EmbeddedServer, ServerPorts

    explicit = ("--model-control-mode=explicit", f"--load-model={args.name}")
    server = EmbeddedServer(repository, ServerPorts.free(), extra_args=explicit)
    stdout_console().print(f"starting the embedded Triton server to check {args.name!r} ...", highlight=False)
    with server:
        yield server.grpc_url


async def _validate(
    args: argparse.Namespace, backend: str, repository: Path, signature: OnnxSignature
) -> int:
    """Check on -u's server (the model loaded there first), else on an embedded one."""
    from loadgen.deploy.served_check import check_served, expected_bar
    from loadgen.scrape.server_api import ServerAPI

    with contextlib.ExitStack() as stack:
        url = args.url if args.url is not None else stack.enter_context(_embedded(args, repository))
        api = ServerAPI(url)
        try:
            if args.url is not None:
                await api.load_model(args.name)
            agreements = await check_served(
                api,
                args.name,
                args.onnx,
                signature,
                max_batch_size=args.max_batch_size,
                bar=expected_bar(backend, args.fp16),
            )
        finally:
            await api.close()
    console = stdout_console()
    for agreement in agreements:
        console.print(f"{args.name}: {agreement}", highlight=False)
    return EXIT_OK if all(a.ok for a in agreements) else EXIT_MISMATCH
