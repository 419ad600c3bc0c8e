"""Build and run the C firmware of any registered domain (``tinylarge firmware build|run``).

* :func:`build` compiles the domain's full-int8 model(s) with :mod:`shared.tiny.compiler` (C source plus
  ``NAME_metadata.h``: the model id, the domain's labels and window geometry from the registry) and runs
  ``firmware/Makefile`` on the domain's app (``APP_DIR`` = its ``Domain.firmware_dir``, in the domain's
  package) for a target: ``host`` (gcc, talks MQTT itself), ``cortex-m4`` (Arm MPS2 AN386 under
  ``qemu-system-arm``, frames on its serial line), ``cortex-m0plus`` (model + runtime, size only) or
  ``cortex-m4-parity`` (``firmware/targets/cortex-m4/parity.mk``: the
  model and runtime with the app's M4 flags and a main that maps int8 input vectors to outputs).
* :func:`qemu_command` / :func:`run_qemu` start a Cortex-M4 image with semihosting (sensor files are
  read from the host through it); :func:`run_parity` feeds ``parity.elf`` a whole batch in one process.
* :func:`slot_model`: the model a gateway installed after verifying a signed update (``build --slot``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO / "firmware"
TARGETS = ("host", "cortex-m4", "cortex-m0plus", "cortex-m4-parity")
#: targets that link a domain's app (the others build the model and runtime alone)
APP_TARGETS = ("host", "cortex-m4")
#: targets whose rules live beside the target instead of in firmware/Makefile (they include it)
_TARGET_MAKEFILES = {"cortex-m4-parity": FIRMWARE_DIR / "targets" / "cortex-m4" / "parity.mk"}
_ARTIFACTS = {"host": ["app"], "cortex-m4": ["app.elf", "bench.elf", "model_runtime.size"],
              "cortex-m0plus": ["model_runtime.a", "model_runtime.size"], "cortex-m4-parity": ["parity.elf"]}
QEMU_MACHINE = "mps2-an386"
#: the file a gateway writes an accepted model to, in ``<model-dir>/<device>/`` (with ``.json`` metadata)
SLOT_FILE = "model.tflite"


class FirmwareError(RuntimeError):
    """A build or run step failed; the message carries the tool's output."""


def models_dir(domain: str) -> Path:
    """``Domain.models_dir`` as ``tinylarge train`` left it: relative to the working directory when there,
    else to the repository."""
    from shared.domain import get

    rel = Path(get(domain).models_dir)
    return rel if rel.is_absolute() or rel.exists() else REPO / rel


def app_model_files(domain: str) -> tuple[str, ...]:
    """The model files a domain's app needs, primary first: ``APP_MODELS`` in its ``app.mk`` (files in the
    domain's models dir, e.g. ``tiny.tflite anomaly.tflite``); ``("tiny.tflite",)`` when it declares none."""
    from shared.domain import get

    mk = get(domain).firmware_dir / "app.mk"
    found = re.search(r"^APP_MODELS\s*:?=\s*(.+)$", mk.read_text(), re.M) if mk.is_file() else None
    return tuple(found.group(1).split()) if found else ("tiny.tflite",)


def app_extra_models(domain: str, directory: Path | None = None) -> list[FirmwareModel]:
    """The app's models after the primary one (:func:`app_model_files`) from ``directory`` (default the domain's
    models dir): C name ``<domain>_<stem>``, id from ``labels.json``'s ``<stem>_model_id`` when there."""
    directory = models_dir(domain) if directory is None else Path(directory)
    labels = directory / "labels.json"
    ids = json.loads(labels.read_text()) if labels.is_file() else {}
    return [FirmwareModel(directory / f, c_name(f"{domain}_{Path(f).stem}"),
                          str(ids.get(f"{Path(f).stem}_model_id", ""))) for f in app_model_files(domain)[1:]]


def c_name(model_id_prefix: str) -> str:
    """The C identifier of a model id prefix: ``healthcare-tiny`` -> ``healthcare_tiny``."""
    name = re.sub(r"\W", "_", model_id_prefix).lower()
    return name if name.isidentifier() else f"m_{name}"


@dataclass(frozen=True)
class FirmwareModel:
    """One model compiled into a build."""

    path: Path  #: full-int8 .tflite
    name: str  #: C identifier of its symbols and files (``healthcare_tiny``)
    model_id: str = ""  #: ``id@version`` in NAME_metadata.h; "" = ``<id prefix>@<sha256[:8] of the file>``
    labels: tuple[str, ...] | None = None  #: None: the domain's labels for the first model, none for the others

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if not self.name.isidentifier():
            raise ValueError(f"models: name {self.name!r} is not a C identifier")


@dataclass
class BuildConfig:
    """One firmware build: a domain's app, its model(s), a target.

    ``models`` empty = the domain's tiny model, ``<Domain.models_dir>/tiny.tflite`` named after
    ``Domain.tiny_model``. The first model is the primary one: its id is the ``model`` of every message
    and it gets the domain's labels. The model-only targets (cortex-m0plus, cortex-m4-parity) need no app.
    """

    app: str | None = None  #: a registered domain; its app is the domain's ``firmware_dir``
    target: str = "host"  #: host | cortex-m4 | cortex-m0plus | cortex-m4-parity (model I/O harness)
    models: Sequence[FirmwareModel] = ()
    out_dir: Path = field(default_factory=lambda: REPO / "build" / "firmware")
    defines: tuple[str, ...] = ()  #: extra -D flags for the app (e.g. HC_WINDOW_S=10)

    def __post_init__(self) -> None:
        from shared.domain import names

        if self.target not in TARGETS:
            raise ValueError(f"target: expected one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.app is None and self.target in APP_TARGETS:
            raise ValueError(f"app: target {self.target} builds a domain's app; choose one of "
                             f"{', '.join(names()) or '(none registered: pip install -e .)'}")
        if self.app is not None and self.app not in names():
            raise ValueError(f"app: expected a registered domain ({', '.join(names())}), got {self.app!r}")
        if self.app is None and not self.models:
            raise ValueError("models: a model-only build without an app needs its models listed")
        self.models = tuple(m if isinstance(m, FirmwareModel) else FirmwareModel(Path(m), c_name(Path(m).stem))
                            for m in self.models) or self._domain_models()
        if len({m.name for m in self.models}) != len(self.models):
            raise ValueError(f"models: names must differ, got {[m.name for m in self.models]}")
        self.out_dir = Path(self.out_dir)

    def _domain_models(self) -> tuple[FirmwareModel, ...]:
        from shared.domain import get

        d = get(self.app)  # type: ignore[arg-type]
        primary = FirmwareModel(models_dir(d.name) / "tiny.tflite", c_name(d.tiny_model))
        return (primary, *app_extra_models(d.name))

    @property
    def folder(self) -> str:
        """The build's folder name: the app, or the first model's name for a model-only build."""
        return self.app or self.models[0].name


@dataclass
class BuildResult:
    target: str
    out_dir: Path  #: where the target's artifacts are
    model_dir: Path  #: the compiled models (NAME.h, NAME.c, NAME_metadata.h)
    model_id: str  #: the primary model's id@version
    artifacts: dict[str, Path]
    models: tuple[str, ...] = ()  #: C names, primary first


def model_id_for(tflite: Path, prefix: str) -> str:
    """``prefix@<first 8 hex of sha256>``: a stable version for a given model file."""
    return f"{prefix}@{hashlib.sha256(Path(tflite).read_bytes()).hexdigest()[:8]}"


def slot_model(slot_dir: Path) -> tuple[Path, str]:
    """(model file, ``id@version``) of the model a gateway installed in ``slot_dir`` (a
    :class:`shared.security.model_update.ModelSlot` folder: ``model.tflite`` + ``model.tflite.json``), checked
    against the SHA-256 recorded when its signature was verified; FirmwareError if missing or altered."""
    model = Path(slot_dir) / SLOT_FILE
    meta_path = model.with_name(SLOT_FILE + ".json")
    if not model.is_file() or not meta_path.is_file():
        raise FirmwareError(f"{slot_dir}: no installed model ({SLOT_FILE} and {SLOT_FILE}.json); "
                            "the gateway writes them when it accepts a signed update")
    try:
        meta = json.loads(meta_path.read_text())
        model_id, version, digest = str(meta["model_id"]), int(meta["version"]), str(meta["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FirmwareError(f"{meta_path}: unreadable slot metadata ({exc})") from None
    if hashlib.sha256(model.read_bytes()).hexdigest() != digest:
        raise FirmwareError(f"{model}: contents differ from the verified sha256 in {meta_path.name}")
    return model, f"{model_id}@{version}"


def compile_model(tflite: Path, name: str, out_dir: Path, metadata=None) -> Path:
    """shared.tiny.compiler: tflite -> out_dir/name.{h,c} and name_metadata.h; returns out_dir."""
    from shared.tiny.compiler import compile_tflite

    compile_tflite(Path(tflite), name, out_dir, metadata=metadata)
    return Path(out_dir)


def app_dir(app: str) -> Path:
    """The firmware app of registered domain ``app``: its ``Domain.firmware_dir`` (``<package>/firmware``);
    FirmwareError naming the domain and the folder when it holds no C sources."""
    from shared.domain import get

    d = get(app)
    folder = d.firmware_dir
    if not any(folder.glob("*.c")):
        raise FirmwareError(f"domain {app}: no firmware app in {folder} (Domain.firmware = {d.firmware!r}: the "
                            "folder, in the domain's package, of its C app; one of its *.c defines tl_app_domain)")
    return folder


def make(target: str, model_dir: Path, models: Sequence[str], out: Path, app: str | None = None,
         goal: str | None = None, extra_cflags: Sequence[str] = (), variables: dict[str, str] | None = None) -> None:
    """Run firmware/Makefile (``APP_DIR`` = the domain ``app``'s :func:`app_dir` and ``APP`` = its name,
    ``MODELS``, ``MODEL_DIR``, ``OUT``, plus ``variables``: a board row's, see
    :meth:`shared.tiny.boards.Board.make_vars`); FirmwareError with the compiler output on failure."""
    tool = "gcc" if target == "host" else "arm-none-eabi-gcc"
    if shutil.which(tool) is None:
        raise FirmwareError(f"{tool} not found on PATH (needed for target {target})")
    cmd = ["make", "-s", "-C", str(FIRMWARE_DIR), goal or target, f"TARGET={target}", f"MODEL_DIR={model_dir}",
           f"MODELS={' '.join(models)}", f"OUT={out}"]
    if app is not None:
        cmd += [f"APP={app}", f"APP_DIR={app_dir(app)}"]
    if target in _TARGET_MAKEFILES:
        cmd[4:4] = ["-f", str(_TARGET_MAKEFILES[target])]
    if extra_cflags:
        cmd.append("EXTRA_CFLAGS=" + " ".join(extra_cflags))
    cmd += [f"{k}={v}" for k, v in (variables or {}).items()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FirmwareError(f"make {goal or target} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def build(cfg: BuildConfig) -> BuildResult:
    """Compile the models (with their metadata) and build one target; returns where everything is."""
    from shared.domain import get
    from shared.tiny.compiler import ModelMetadata

    domain = get(cfg.app) if cfg.app is not None else None
    model_dir = cfg.out_dir / "model" / cfg.folder
    ids = []
    for i, m in enumerate(cfg.models):
        if not m.path.exists():
            hint = f" (train it: tinylarge train {cfg.app})" if domain is not None and i == 0 else ""
            raise FirmwareError(f"model {m.path} not found{hint}")
        prefix = domain.tiny_model if domain is not None and i == 0 else m.name
        model_id = m.model_id or model_id_for(m.path, prefix)
        labels = m.labels if m.labels is not None or domain is None or i else domain.labels
        meta = (ModelMetadata.for_domain(domain.name, model_id, labels) if domain is not None
                else ModelMetadata(model_id, labels))
        compile_model(m.path, m.name, model_dir, meta)
        ids.append(model_id)
    out = cfg.out_dir / cfg.target / cfg.folder
    names = tuple(m.name for m in cfg.models)
    make(cfg.target, model_dir, names, out, cfg.app if cfg.target in APP_TARGETS else None,
         extra_cflags=[f"-D{d}" for d in cfg.defines])
    return BuildResult(cfg.target, out, model_dir, ids[0], {n: out / n for n in _ARTIFACTS[cfg.target]}, names)


def standin_tflite(domain: str, path: Path, seed: int = 0) -> Path:
    """An untrained stand-in for a domain's tiny model with its interface (feature vector -> one softmax
    score per label), for building and testing the firmware before the domain is trained."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from shared.domain import get
    from shared.tiny.int8 import to_int8_tflite

    d = get(domain)
    n_in, n_out = len(d.feature_names), len(d.labels)
    tf.keras.utils.set_random_seed(seed)
    x = tf.keras.Input((n_in,))
    h = tf.keras.layers.Dense(16, activation="relu")(x)
    model = tf.keras.Model(x, tf.keras.layers.Dense(n_out, activation="softmax")(h))
    rep = np.random.default_rng(seed).normal(size=(128, n_in)).astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_int8_tflite(model, rep, path)
    return path


def domain_tflite(domain: str, cache_dir: Path) -> Path:
    """The domain's trained tiny model when present, else a stand-in built once into cache_dir."""
    trained = models_dir(domain) / "tiny.tflite"
    if trained.exists():
        return trained
    path = Path(cache_dir) / f"{domain}_standin.tflite"
    return path if path.exists() else standin_tflite(domain, path)


# ---- QEMU ------------------------------------------------------------------------------------------

def qemu_command(elf: Path, args: Sequence[str] = (), icount: bool = False, machine: str = QEMU_MACHINE) -> list[str]:
    """qemu-system-arm for the Cortex-M4 image (or an MPS2 board row's ``machine``): serial on stdout,
    semihosting for files and stderr."""
    exe = shutil.which("qemu-system-arm")
    if exe is None:
        raise FirmwareError("qemu-system-arm not found on PATH")
    cmd = [exe, "-M", machine, "-nographic", "-monitor", "none", "-serial", "stdio",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    if icount:
        cmd[1:1] = ["-icount", "shift=0"]
    if args:
        if any(" " in a for a in args):
            raise ValueError("QEMU -append arguments cannot contain spaces")
        cmd += ["-append", " ".join(args)]
    return cmd


@dataclass
class QemuRun:
    returncode: int
    serial: bytes  #: what the firmware wrote on UART0
    stderr: str  #: semihosting stderr (logs) and QEMU's own messages


def run_qemu(elf: Path, args: Sequence[str] = (), timeout_s: float = 60.0, icount: bool = False,
             cwd: Path | None = None, machine: str = QEMU_MACHINE) -> QemuRun:
    """Run the image to completion (it exits through semihosting); FirmwareError on timeout."""
    try:
        proc = subprocess.run(qemu_command(elf, args, icount, machine), capture_output=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise FirmwareError(f"QEMU did not finish within {timeout_s} s") from exc
    return QemuRun(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))


def run_parity(elf: Path, inputs, workdir: Path, timeout_s: float = 120.0, machine: str = QEMU_MACHINE):
    """Run ``parity.elf`` (target ``cortex-m4-parity``) on every row of ``inputs`` (int8 ``[N, input
    size]``) in one QEMU process; returns the int8 outputs ``[N, output size]``. The vectors travel in
    files under ``workdir`` (absolute paths without spaces: they go through QEMU's -append)."""
    import numpy as np

    xs = np.ascontiguousarray(inputs, dtype=np.int8)
    if xs.ndim != 2 or len(xs) == 0:
        raise ValueError(f"inputs: expected a non-empty int8 [N, input_size] array, got shape {xs.shape}")
    workdir = Path(workdir).resolve()
    fin, fout = workdir / f"{Path(elf).stem}.in.bin", workdir / f"{Path(elf).stem}.out.bin"
    fin.write_bytes(xs.tobytes())
    fout.unlink(missing_ok=True)
    run = run_qemu(elf, ["--in", str(fin), "--out", str(fout)], timeout_s=timeout_s, machine=machine)
    text = run.serial.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("TLPARITY ")), None)
    if run.returncode != 0 or line is None:
        raise FirmwareError(f"parity run failed (exit {run.returncode}): {(text + run.stderr)[-800:]}")
    kv = dict(item.split("=", 1) for item in line.split()[1:])
    if int(kv["inputs"]) != len(xs) or int(kv["in"]) != xs.shape[1]:
        raise FirmwareError(f"parity run read {kv['inputs']} vectors of {kv['in']} values, "
                            f"sent {len(xs)} of {xs.shape[1]}")
    out = np.frombuffer(fout.read_bytes(), np.int8)
    if out.size != len(xs) * int(kv["out"]):
        raise FirmwareError(f"{fout}: {out.size} bytes, expected {len(xs)} x {kv['out']}")
    return out.reshape(len(xs), int(kv["out"]))
