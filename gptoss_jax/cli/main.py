"""`gptoss SUBCOMMAND [--flags]`: one entry point; each subcommand is a module with its own absl flags and main().

    gptoss demo        write (once) and load the embedded synthetic model, chat, constrain, check and score
    gptoss convert     a release checkpoint (either layout) -> Orbax, MXFP4 kept packed
    gptoss generate    sample continuations of a prompt, or answer a harmony chat (--chat, --messages)
    gptoss chat        interactive harmony chat, streamed
    gptoss score       log-likelihood of continuations given prompts
    gptoss eval        benchmark sweeps (a local model or an OpenAI-compatible endpoint)
    gptoss bench       prefill and decode throughput against the roofline
    gptoss serve       an OpenAI-compatible server (chat completions, responses, completions; streaming)

`gptoss SUBCOMMAND --help` lists a subcommand's flags. Bad input (flags, files, checkpoints, requests) ends the
command with one line on stderr, `gptoss SUBCOMMAND: error: ...`, and exit status 2. Logs of the libraries underneath
stay below WARNING unless --verbose; a closed stdout (`gptoss ... | head`) ends the command quietly (status 141).
"""
from __future__ import annotations

import difflib
import importlib
import sys

SUBCOMMANDS = {
    "demo": "gptoss_jax.cli.demo",
    "convert": "gptoss_jax.cli.convert",
    "generate": "gptoss_jax.cli.generate",
    "chat": "gptoss_jax.cli.chat",
    "score": "gptoss_jax.cli.score",
    "eval": "evals.cli",
    "bench": "gptoss_jax.cli.bench",
    "serve": "gptoss_jax.cli.serve",
}
HELP_ARGS = ("-h", "--help", "-help", "--helpshort", "-?")
USAGE_EXIT = 2  # bad flags or input, as argparse and `gptoss eval` exit


def _usage() -> str:
    return "usage: gptoss {" + ",".join(SUBCOMMANDS) + "} [--flags]\n" + __doc__.split("\n\n", 1)[1].split("\n\n")[0]


def input_errors() -> tuple[type[BaseException], ...]:
    """The exceptions the CLI shows as one line: absl's usage errors and every error the project raises on purpose
    (gptoss_jax.errors: bad input, a missing package or tool, a job that cannot start), each naming what is wrong and
    what was expected."""
    from absl import app

    from gptoss_jax.errors import GptOssError

    return (app.UsageError, GptOssError)


def subcommand_help(sub: str, module) -> str:
    """The subcommand's docstring, then its flags: its own module's first, the shared ones after, the
    multi-process ones last."""
    from absl import flags

    from gptoss_jax.cli import distributed_flags

    ours = [m for m in flags.FLAGS.flags_by_module_dict() if m.startswith(("gptoss_jax.", "evals."))]
    modules = sorted(ours, key=lambda m: (m != module.__name__, m == distributed_flags.__name__))
    parts = [(module.__doc__ or f"gptoss {sub}").strip(), ""]
    for name in modules:
        text = flags.FLAGS.module_help(name)
        if text:
            parts.append(text)
    parts.append(f"\n(gptoss {sub} --helpfull also lists absl's logging flags)")
    return "\n".join(parts)


def unknown_subcommand(sub: str) -> str:
    """The error for a subcommand that does not exist, with the nearest one when it looks like a typo."""
    near = difflib.get_close_matches(sub, list(SUBCOMMANDS), n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"gptoss: unknown subcommand {sub!r}{hint}\n{_usage()}"


def _fail(sub: str, message: str, code: int = USAGE_EXIT):
    print(f"gptoss {sub}: error: {message}", file=sys.stderr)
    sys.exit(code)


def run(argv: list[str] | None = None) -> None:
    """The `gptoss` entry point; a closed stdout ends it quietly wherever that happens."""
    try:
        try:
            _run(list(sys.argv if argv is None else argv))
        finally:
            sys.stdout.flush()   # a reader that went away shows here, not in the interpreter's exit
    except BrokenPipeError:
        from gptoss_jax.cli import console

        console.end_on_broken_pipe()


def _run(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] in HELP_ARGS + ("help",):
        print(_usage(), file=sys.stdout if len(argv) >= 2 else sys.stderr)
        sys.exit(0 if len(argv) >= 2 else USAGE_EXIT)
    sub = argv[1]
    if sub not in SUBCOMMANDS:
        print(unknown_subcommand(sub), file=sys.stderr)
        sys.exit(USAGE_EXIT)
    from gptoss_jax.progress import Waiting

    try:
        with Waiting(f"gptoss {sub}: starting (importing JAX)"):
            module = importlib.import_module(SUBCOMMANDS[sub])
    except ModuleNotFoundError as e:
        print(f"gptoss {sub}: not available in this installation ({e})", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    from absl import app, flags

    from gptoss_jax.cli import console  # --verbose; quiet logs, the compile notice
    from gptoss_jax.cli import distributed_flags  # --coordinator_address, --num_processes, ... on every subcommand

    if any(a in HELP_ARGS for a in argv[2:]):
        print(subcommand_help(sub, module))
        sys.exit(0)

    def parse_flags(args):
        try:
            return flags.FLAGS(args)
        except flags.Error as e:
            _fail(sub, f"{e} (gptoss {sub} --help lists the flags)")

    def main(args):
        console.setup(sub)
        try:  # join the multi-process job (if any) before anything uses a device
            distributed_flags.init_distributed()
            console.watch_compiles()
            return module.main(args)
        except KeyboardInterrupt:
            print(f"\ngptoss {sub}: interrupted", file=sys.stderr)
            sys.exit(130)
        except BrokenPipeError:
            raise
        except Exception as e:  # noqa: BLE001 - only input errors are shown as a line; the rest re-raise
            if isinstance(e, input_errors()):
                _fail(sub, str(e))
            raise
        finally:
            console.stop_watching_compiles()

    app.run(main, argv=[f"gptoss {sub}"] + argv[2:], flags_parser=parse_flags)


if __name__ == "__main__":
    run()
