"""Shared command-line handling of the tools.

* ``parse_config``: ``--cfg FILE`` (or ``--config-file``), ``--debug``, then ``KEY VALUE`` overrides.
* ``run(main)``: every user error ends as one ``error: ...`` line on stderr and exit status 1 (the traceback goes to
  the log file, and to the console with ``--debug``); an interrupted training exits with 128 + the signal number.
* ``build_inference_model`` (from ``segmentation.engine.predictor``): the model of a config with the weights of a
  checkpoint, refusing non-finite weights and warning when the checkpoint comes from an unfinished run.
"""
import argparse
import logging
import os
import sys

# OpenMP threads waiting for work spin for ~300,000 iterations by default (GNU OpenMP), which is what makes torch's
# threads collapse when other jobs share the cores (10x slower steps, docs/benchmarks.md "Threads"); a short spin
# was as fast alone and several times faster under load. Read when torch loads OpenMP: set before importing it.
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"

from segmentation.config import ConfigError, load_config  # noqa: E402  (after the OpenMP setting)
from segmentation.engine.predictor import (  # noqa: E402, F401  (re-exported for the tools)
    build_inference_model,
    checkpoint_path_for_inference,
)

_DEBUG = {"on": "--debug" in sys.argv}
# exception types that mean a bug in this repository rather than a wrong input: reported as internal errors
_BUG_TYPES = (AssertionError, AttributeError, IndexError, NameError, TypeError, UnboundLocalError, ZeroDivisionError)
# (text of an error, what to add to its one line): errors whose own text does not say what to change
_HINTS = (
    # torch drops the message of torch._assert_async on CUDA (pytorch/pytorch#131491): the kernel only says it failed
    ("device-side assert triggered",
     "a check inside a CUDA kernel failed (the CUDA context is lost: restart). This repository's own such check is "
     "OM.MAX_INSTANCES, the most thing segments an image may hold for the OM targets on a GPU: raise it if your "
     "images hold more. Otherwise rerun with CUDA_LAUNCH_BLOCKING=1: the failing kernel's assertion is printed "
     "above the traceback (e.g. a label outside the classes in a loss)"),
)


def parse_config(description, argv=None, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", "--config-file", dest="cfg", required=True, metavar="FILE", help="YAML config")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    if extra:
        extra(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    args = parser.parse_args(argv)
    _DEBUG["on"] = _DEBUG["on"] or args.debug
    try:
        cfg = load_config(args.cfg, args.opts)
    except ConfigError as e:
        parser.exit(2, f"error: {e}\n")
    return args, cfg


def log_config(logger, args, cfg):
    """The console gets the config file and overrides; the log file gets the whole resolved config."""
    overrides = " ".join(args.opts) if args.opts else "none"
    logger.info("Config %s, overrides: %s (resolved config in the log file%s).", args.cfg, overrides,
                " and config.yaml" if cfg.OUTPUT_DIR else "")
    from segmentation.config import dump_config
    logger.debug("Resolved config:\n%s", dump_config(cfg))


def _message(error):
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    if isinstance(error, _BUG_TYPES):
        return f"internal error ({type(error).__name__}: {text}); please report it with the traceback"
    hints = [hint for pattern, hint in _HINTS if pattern in text]
    if hints:
        return "; ".join([text.splitlines()[0], *hints])
    return text or type(error).__name__


def run(main, argv=None):
    """Call ``main(argv)`` and turn what it raises into an exit status: 0 or main's own, 1 for an error (one line),
    128 + N for a training stopped by signal N after saving."""
    from segmentation.engine.trainer import TrainingInterrupted
    from segmentation.utils import comm
    try:
        status = main(argv) or 0
        comm.shutdown()  # under torchrun: every process got here, then the process group goes
        return status
    except TrainingInterrupted as e:
        logging.getLogger("segmentation").info("%s", e)
        return e.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside training (evaluation, demo, export): no traceback
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if _DEBUG["on"]:
            raise
        logger = logging.getLogger("segmentation")
        logger.debug("The error's traceback:", exc_info=e)  # DEBUG: the log file only, not the console
        files = [h.baseFilename for h in logger.handlers if isinstance(h, logging.FileHandler)]
        where = f"the traceback is in {files[0]}" if files else "rerun with --debug for the traceback"
        print(f"error: {_message(e)}\n({where})", file=sys.stderr)
        return 1


def median_time(fn, repeat, warmup=True):
    """Median wall time of ``repeat`` calls of ``fn`` (after one untimed call when ``warmup``)."""
    import statistics
    import time
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
