"""Build the SageMaker image with podman and run it as SageMaker would: `train`, then `serve`.

No Docker engine or container registry is needed: the base image is made here (``debootstrap
--variant=minbase`` of this machine's Debian release, from the mirror apt already uses, then
``podman import``) and the ``Dockerfile`` is built ``--from`` it. Then:

1. ``IMAGE train`` over a mounted ``/opt/ml``: a raw CSV channel (a slice of the bundled
   Banking77 set, columns renamed so that the ``text-column``/``label-column`` hyperparameters
   matter), every hyperparameter a string as SageMaker writes them, ``model=minilm``, no network;
2. ``IMAGE serve`` over the trained model, as ``deploy --target sagemaker`` ships it (the
   ``model.tar.gz`` of :func:`intentkit.sagemaker.pack.pack_model`, ONNX export included,
   extracted read-only) and as trained (no export: the server exports at start), each published
   on 127.0.0.1 only; ``/ping`` and ``/invocations`` (JSON and JSON Lines) are checked, and the
   start-to-first-answer time is set against SageMaker Serverless' documented limits.

Missing tools (podman, runc, debootstrap, fuse-overlayfs) are installed with apt-get. Heavy on CPU
and network (the build downloads ~1 GB from PyPI): run it niced, e.g.

    nice -n 10 python bench/container_image.py   # -> bench/results/<today>/container_image.json
    nice -n 10 python bench/container_image.py --no-cache  # time a build from scratch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import BENCH, default_json_path, write_json

REPO = BENCH.parent
IMAGE = "localhost/intentkit:bench"
# Global podman flags these sandboxed machines need: crun and the systemd cgroup manager do not
# work here; runc with plain cgroupfs does.
PODMAN = ["podman", "--runtime", "/usr/sbin/runc", "--cgroup-manager", "cgroupfs"]
# podman raises the open-file limit to ~1M by default, which the sandbox refuses.
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}
TOOLS["fuse-overlayfs"] = "fuse-overlayfs"
LABEL = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"
# https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariantServerlessConfig.html
SERVERLESS = {
    "ping_within_s": 180,  # "the server must respond successfully to /ping within 3 minutes"
    "invocation_timeout_s": 60,
    "payload_mb": 4,
    "memory_mb": [1024, 6144],
    "sources": [
        "https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html",
        "https://docs.aws.amazon.com/sagemaker/latest/APIReference/"
        "API_ProductionVariantServerlessConfig.html",
    ],
}
TRAIN_LABELS, ROWS_PER_LABEL = 6, 40


def sh(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``, raise with its stderr's tail when it fails."""
    res = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout)[-3000:]
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{tail}")
    return res


def ensure_tools() -> list[str]:
    """apt-get install whichever of TOOLS is missing; return what was installed."""
    missing = [pkg for pkg, exe in TOOLS.items() if not shutil.which(exe, path=_sbin_path())]
    if missing:
        sh(["apt-get", "update"])
        sh(["apt-get", "install", "-y", *missing])
    return missing


def _sbin_path() -> str:
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def os_release() -> dict[str, str]:
    """``/etc/os-release`` as a dict (VERSION_CODENAME names the Debian release)."""
    text = Path("/etc/os-release").read_text()
    return dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', text, re.M))


def debian_mirror(codename: str) -> str:
    """The Debian mirror apt uses for ``codename`` (deb822 or one-line sources)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = path.read_text() if path.is_file() else ""
        for block in text.split("\n\n"):  # deb822: URIs and Suites in one stanza
            uris = re.search(r"^URIs:\s*(\S+)", block, re.M)
            suites = re.search(r"^Suites:(.*)$", block, re.M)
            if uris and suites and codename in suites.group(1).split():
                return uris.group(1)
        for m in re.finditer(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{codename}\s", text, re.M):
            return m.group(1)
    return "http://deb.debian.org/debian"


def make_base(codename: str, mirror: str) -> dict[str, Any]:
    """``localhost/intentkit-base:CODENAME``: debootstrap minbase + python3-venv, imported."""
    tag = f"localhost/intentkit-base:{codename}"
    if subprocess.run([*PODMAN, "image", "exists", tag]).returncode == 0:
        size = image_size(tag)
        return {"image": tag, "made_now": False, "size_bytes": size, "size_mib": size >> 20}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        include = "python3,python3-venv,ca-certificates"
        sh(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={include}",
                codename,
                str(root),
                mirror,
            ]
        )
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
        ):
            shutil.rmtree(root / junk, ignore_errors=True)
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        )
        sh([*PODMAN, "import", "--change", 'CMD ["/bin/bash"]', "-", tag], stdin=tar.stdout)
        if tar.wait() != 0:
            raise SystemExit("tar of the debootstrap tree failed")
    return {
        "image": tag,
        "made_now": True,
        "seconds": round(time.monotonic() - t0, 1),
        "size_bytes": image_size(tag),
        "size_mib": image_size(tag) >> 20,
    }


def torch_wheels(version: str) -> str | None:
    """A folder holding the CPU torch wheel (``/opt/wheels`` on these machines), else None."""
    folder = Path("/opt/wheels")
    return str(folder) if any(folder.glob(f"torch-{version}+cpu-*.whl")) else None


def build(base: str, *, no_cache: bool) -> dict[str, Any]:
    """``podman build --from BASE`` of the repository's Dockerfile; time and size."""
    version = re.search(r"ARG TORCH_VERSION=(\S+)", (REPO / "Dockerfile").read_text()).group(1)
    cmd = [*PODMAN, "build", "--from", base, "--format", "docker", "-t", IMAGE, *ULIMITS]
    cmd += ["--network", "host"]  # the build's own network namespace cannot reach PyPI here
    wheels = torch_wheels(version)
    if wheels:  # download.pytorch.org is out of reach; the same CPU wheel lies on disk
        cmd += ["--volume", f"{wheels}:/wheels:ro", "--build-arg", "TORCH_WHEELS=/wheels"]
    bundle = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():  # this machine's TLS proxy signs PyPI's certificate with its own CA
        cmd += ["--volume", f"{bundle}:/build-ca.crt:ro", "--build-arg", "PIP_CERT=/build-ca.crt"]
    if no_cache:
        cmd.append("--no-cache")
    t0 = time.monotonic()
    sh([*cmd, str(REPO)])
    seconds = time.monotonic() - t0
    probe = "import torch, intentkit; print(torch.__version__, intentkit.__version__)"
    versions = run_in_image(["python", "-c", probe]).split()
    tools = run_in_image(
        ["sh", "-c", "for t in gcc cc g++ make ld as; do command -v $t; done; true"]
    )
    cache = run_in_image(["sh", "-c", "du -sk /root/.cache 2>/dev/null | cut -f1; true"])
    fmt = '{{index .Labels "' + LABEL + '"}}'
    label = sh([*PODMAN, "image", "inspect", "--format", fmt, IMAGE]).stdout.strip()
    size = image_size(IMAGE)
    return {
        "image": IMAGE,
        "seconds": round(seconds, 1),
        "no_cache": no_cache,
        "size_bytes": size,
        "size_gib": round(size / 2**30, 2),
        "torch": versions[0],
        "intentkit": versions[1],
        "torch_from": wheels or "index",
        "build_tools_found": tools.split(),
        "root_cache_kib": int(cache or 0),
        "label_accept_bind_to_port": label,
    }


def image_size(tag: str) -> int:
    """The image's size in bytes, as ``podman images`` counts it."""
    return int(sh([*PODMAN, "image", "inspect", "--format", "{{.Size}}", tag]).stdout)


def run_in_image(cmd: list[str]) -> str:
    """Run ``cmd`` in the image (entry point replaced), no network; its stdout."""
    first, *rest = cmd
    res = sh(
        [*PODMAN, "run", "--rm", *ULIMITS, "--network", "none", "--entrypoint", first, IMAGE, *rest]
    )
    return res.stdout.strip()


def write_training_job(root: Path) -> dict[str, Any]:
    """An ``/opt/ml`` tree: string hyperparameters and a raw CSV channel with renamed columns."""
    import pandas as pd

    df = pd.read_csv(REPO / "src/intentkit/bundled/banking77/train.csv")
    labels = sorted(df["label"].unique())[:TRAIN_LABELS]
    rows = df[df["label"].isin(labels)].groupby("label").head(ROWS_PER_LABEL)
    hp = {
        "model": "minilm",
        "epochs": "2",
        "batch-size": "16",
        "lr": "1e-4",
        "seed": "0",
        "device": "cpu",
        "text-column": "utterance",
        "label-column": "intent",
        "sagemaker_program": "unused.py",
    }
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hp))
    (config / "inputdataconfig.json").write_text(
        json.dumps({"train": {"TrainingInputMode": "File"}})
    )
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
        )
    )
    channel = root / "input" / "data" / "train"
    channel.mkdir(parents=True)
    rows.rename(columns={"text": "utterance", "label": "intent"}).to_csv(
        channel / "banking.csv", index=False
    )
    return {"rows": len(rows), "labels": len(labels), "hyperparameters": hp}


def train(root: Path) -> dict[str, Any]:
    """``IMAGE train`` over ``root`` as ``/opt/ml``, offline: minilm ships in the image."""
    job = write_training_job(root)
    t0 = time.monotonic()
    res = subprocess.run(
        [
            *PODMAN,
            "run",
            "--rm",
            *ULIMITS,
            "--network",
            "none",
            "-v",
            f"{root}:/opt/ml",
            IMAGE,
            "train",
        ],
        text=True,
        capture_output=True,
    )
    seconds = time.monotonic() - t0
    failure = root / "output" / "failure"
    if res.returncode != 0:
        reason = failure.read_text() if failure.exists() else res.stderr[-3000:]
        raise SystemExit(f"IMAGE train exited {res.returncode}: {reason}")
    meta = json.loads((root / "model" / "intentkit.json").read_text())
    assert len(meta["labels"]) == job["labels"], meta["labels"]
    assert meta["train_config"]["epochs"] == 2.0 and meta["train_config"]["batch_size"] == 16
    return {**job, "seconds": round(seconds, 1)}


def packed_model(model: Path, dest: Path) -> Path:
    """The model as ``deploy --target sagemaker`` ships it: its model.tar.gz, extracted."""
    from intentkit.sagemaker.pack import pack_model

    archive = pack_model(model, dest.parent / "model.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def serve(model: Path, name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start ``IMAGE serve`` on ``model`` (read-only), time /ping and the first answer, stop it."""
    import httpx

    from intentkit.serve.server import free_port

    env = env or {}
    inner = int(env.get("SAGEMAKER_BIND_TO_PORT", 8080))
    port = free_port()
    flags = [f"-e={k}={v}" for k, v in env.items()]
    cmd = [
        *PODMAN,
        "run",
        "-d",
        "--name",
        name,
        *ULIMITS,
        "-p",
        f"127.0.0.1:{port}:{inner}",
        "-v",
        f"{model}:/opt/ml/model:ro",
        *flags,
        IMAGE,
        "serve",
    ]
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    sh(cmd)
    try:
        ping_s = wait_ping(url, t0, name)
        r = httpx.post(
            f"{url}/invocations", json={"text": "my card has not arrived yet"}, timeout=60
        )
        first_s = time.monotonic() - t0
        r.raise_for_status()
        single = r.json()
        assert set(single) >= {"predicted_class", "confidence"}, single
        lines = "\n".join(json.dumps({"text": f"where is my card number {i}"}) for i in range(500))
        r = httpx.post(
            f"{url}/invocations",
            content=lines,
            timeout=60,
            headers={"content-type": "application/jsonlines"},
        )
        r.raise_for_status()
        assert len(r.text.splitlines()) == 500, r.text[:300]
        rss = memory_mib(name)
    finally:
        logs = subprocess.run([*PODMAN, "logs", name], text=True, capture_output=True)
        subprocess.run([*PODMAN, "stop", "-t", "30", name], capture_output=True)
        subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True)
    exported = "export" in (logs.stdout + logs.stderr).lower()
    return {
        "ping_s": round(ping_s, 2),
        "first_answer_s": round(first_s, 2),
        "answer": single,
        "memory_mib": rss,
        "container_port": inner,
        "log_mentions_export": exported,
    }


def wait_ping(url: str, t0: float, name: str, limit: float = 600) -> float:
    """Seconds from ``t0`` until ``/ping`` answers 200 (the container must stay up)."""
    import httpx

    while time.monotonic() - t0 < limit:
        try:
            if httpx.get(f"{url}/ping", timeout=5).status_code == 200:
                return time.monotonic() - t0
        except httpx.TransportError:
            pass
        state = sh([*PODMAN, "inspect", "--format", "{{.State.Status}}", name]).stdout.strip()
        if state not in ("running", "created", "configured"):
            logs = subprocess.run([*PODMAN, "logs", name], text=True, capture_output=True)
            raise SystemExit(f"serve container {state}:\n{(logs.stdout + logs.stderr)[-3000:]}")
        time.sleep(0.1)
    raise SystemExit(f"/ping did not answer within {limit:.0f} s")


def memory_mib(name: str) -> float | None:
    """The container's memory use now (``podman stats``), None where cgroups cannot tell."""
    res = subprocess.run(
        [*PODMAN, "stats", "--no-stream", "--format", "json", name], text=True, capture_output=True
    )
    try:
        usage = json.loads(res.stdout)[0]["mem_usage"].split("/")[0].strip()
    except (ValueError, LookupError):
        return None
    number, unit = re.match(r"([\d.]+)\s*([kMG]?B)", usage).groups()
    return round(
        float(number)
        * {"B": 2**-20, "kB": 1e3 / 2**20, "MB": 1e6 / 2**20, "GB": 1e9 / 2**20}[unit],
        1,
    )


def main() -> None:
    """Build, train, serve; write the JSON and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=default_json_path("container_image"))
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    parser.add_argument("--work", type=Path, default=None, help="keep /opt/ml trees here")
    args = parser.parse_args()
    installed = ensure_tools()
    release = os_release()
    codename = release["VERSION_CODENAME"]
    mirror = debian_mirror(codename)
    base = make_base(codename, mirror)
    print(f"base {base}", flush=True)
    image = build(base["image"], no_cache=args.no_cache)
    print(f"image {image}", flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="intentkit-image-", dir="/var/tmp"))
    trained = train(work / "opt_ml")
    print(f"train {trained['seconds']} s", flush=True)
    model = work / "opt_ml" / "model"
    # as_trained first: packing writes the ONNX export into the model folder itself.
    starts = {"as_trained": serve(model, "intentkit-bench-trained")}
    starts |= {
        "packed": serve(packed_model(model, work / "packed"), "intentkit-bench-packed"),
        "bind_to_port": serve(
            work / "packed", "intentkit-bench-bind", env={"SAGEMAKER_BIND_TO_PORT": "8089"}
        ),
    }
    worst = max(s["first_answer_s"] for s in starts.values())
    load = [round(x, 1) for x in os.getloadavg()]  # this machine is shared: say how busy it was
    podman = sh(["podman", "--version"]).stdout.split()[-1]
    out = {
        "machine": {
            "cpus": _cpus(),
            "python": platform.python_version(),
            "os": release.get("PRETTY_NAME"),
            "load_average_1_5_15m": load,
            "podman": podman,
        },
        "installed_now": installed,
        "mirror": mirror,
        "base": base,
        "build": image,
        "train": trained,
        "serve": starts,
        "serverless_limits": SERVERLESS,
        "worst_first_answer_s": worst,
        "within_serverless_ping_limit": worst < SERVERLESS["ping_within_s"],
    }
    write_json(args.json, out)
    print(json.dumps(out, indent=2))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
