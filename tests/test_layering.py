"""A module imports only modules above it in the architecture's order (README "Layout"), and the
package never imports transformers, openai-whisper, faster-whisper or weights_tools."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "whisperfast"
ORDER = ["errors", "resample", "decoders", "audio", "vad", "features", "tokenizer", "cache", "model", "decode", "results",
         "words", "plan", "vadfilter", ("sequential", "chunked", "vadchunks"),  # one layer: the long-form strategies
         "longform",
         "api", "distributed", "writers", "server_worker", "server", "cli", "__init__", "__main__"]
FORBIDDEN = {"transformers", "whisper", "faster_whisper", "ctranslate2", "weights_tools"}


def index(name: str) -> int | None:
    return next((i for i, e in enumerate(ORDER) if name == e or (isinstance(e, tuple) and name in e)), None)


def layer(module: str) -> int:
    """'whisperfast.model.load' -> index of 'model'."""
    parts = module.split(".")
    return index(parts[1] if len(parts) > 1 else "__init__")


def imports(path: Path) -> list[tuple[str, int]]:
    mod = "whisperfast." + ".".join(path.relative_to(PKG).with_suffix("").parts)
    mod = mod.removesuffix(".__init__") if path.name == "__init__.py" and path.parent != PKG else mod
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
    return out


def test_layers_point_upwards_only():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        own = index(rel.parts[0].removesuffix(".py"))
        assert own is not None, f"{rel} is not in the layer order; add it to ORDER (and the README)"
        for target, line in imports(path):
            if target.split(".")[0] in FORBIDDEN:
                bad.append(f"{rel}:{line} imports {target}")
            if target.startswith("whisperfast.") and layer(target) > own:
                bad.append(f"{rel}:{line} imports {target} (a lower layer)")
    assert not bad, "\n".join(bad)
