"""Generate the documentation's reference pages from the sources, so they never go stale.

The pages are committed under ``docs/reference/`` (so they read on GitHub too) and checked:
``./dev run docs:build`` runs ``--check`` before ``mkdocs build`` and fails on a stale page, as
does ``tests/test_docs_reference.py``. Regenerate them after changing a CLI flag, a recipe key or
a proto comment: ``./dev run docs:gen`` (``python scripts/gen_docs.py``). It writes:

- ``reference/cli.md``: the ``--help`` of ``ssl-train``, ``ssl-serve``, ``ssl-data`` and of every
  subcommand, from the packages' importable argparse parsers (``<package>.cli.build_parser``).
- ``reference/recipe.md``: every key of a pretraining recipe (``ssl_train.recipe.Recipe``) and of
  a fine-tuning recipe (``ssl_train.finetune_recipe.FinetuneRecipe``), walked from the pydantic
  models: type, default, allowed values, bounds, description; plus the names and arguments the
  free-form sections (``encoder``, ``method``, ``views``) accept, from their registries.
- ``reference/grpc.md``: services, RPCs, messages, fields and enums of ``proto/**/*.proto`` with
  their leading comments.

``--output DIR`` writes the pages under another folder instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# argparse wraps help text to the terminal width: fix it so the pages do not depend on who builds.
os.environ["COLUMNS"] = "100"

Opener = Callable[[str, str], IO[str]]


# ---------------------------------------------------------------------------------------------
# CLI reference


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases map to the same parser
                    seen.add(id(sub))
                    yield name, sub


def _cli_sections(command: str, parser: argparse.ArgumentParser, depth: int) -> Iterator[str]:
    yield f"{'#' * depth} `{command}`\n\n```text\n{parser.format_help().rstrip()}\n```\n"
    for name, sub in _subcommands(parser):
        yield from _cli_sections(f"{command} {name}", sub, depth + 1)


def cli_reference() -> str:
    """The CLI reference page: every command's and subcommand's ``--help``."""
    import ssl_data.cli
    import ssl_serve.cli
    import ssl_train.cli

    parts = [
        "# CLI reference\n",
        "Generated at build time from the commands' own argparse parsers: this is exactly what "
        "`--help` prints. Inside the workspace, prefix a command with `./dev run` "
        "(e.g. `./dev run ssl-train recipes`).\n",
    ]
    for command, build in (
        ("ssl-train", ssl_train.cli.build_parser),
        ("ssl-serve", ssl_serve.cli.build_parser),
        ("ssl-data", ssl_data.cli.build_parser),
    ):
        parts.extend(_cli_sections(command, build(), 2))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Recipe reference


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(dict.fromkeys(type(a).__name__ for a in args))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]" if args else name
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _literals(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return [v for a in typing.get_args(annotation) for v in _literals(a)]
    return []


def _code(value: Any) -> str:
    return f"`{json.dumps(value)}`"


_SPHINX_ROLE = re.compile(r":(?:py:)?\w+:`(~?)([\w.]+)`")


def _cell(text: str) -> str:
    """One Markdown table cell: one line, pipes escaped, Sphinx roles as plain code."""
    text = _SPHINX_ROLE.sub(
        lambda m: f"`{m.group(2).split('.')[-1] if m.group(1) else m.group(2)}`", text
    )
    return " ".join(text.split()).replace("|", "\\|")


def _constraints(field: Any) -> list[str]:
    out = []
    for meta in field.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sym} {value}")
    return out


def _model_sections(model: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted prefix, model) for ``model`` and every nested section model, depth first."""
    from pydantic import BaseModel

    yield prefix, model
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _model_sections(ann, f"{prefix}.{name}" if prefix else name)


def _section_table(model: Any, prefix: str, anchor_root: str) -> str:
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    rows = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            anchor = f"{anchor_root}-" + key.replace(".", "-")
            rows.append(f"| `{key}` | section | | | see [`{key}`](#{anchor}) |")
            continue
        if field.is_required():
            default = "**required**"
        elif field.default_factory is not None:
            default = _code(field.default_factory())  # type: ignore[call-arg]
        elif field.default is PydanticUndefined:
            default = ""
        else:
            default = _code(field.default)
        literals = _literals(ann)
        allowed = [", ".join(_code(v) for v in literals)] if literals else []
        allowed += _constraints(field)
        if typing.get_origin(ann) in (typing.Union, types.UnionType) and literals:
            allowed.append("`null`" if type(None) in typing.get_args(ann) else "")
        rows.append(
            f"| `{key}` | {_cell(_type_name(ann))} | {_cell(default)} | "
            f"{_cell(', '.join(a for a in allowed if a))} | {_cell(field.description or '')} |"
        )
    return "\n".join(rows) + "\n"


def _model_doc(model: Any, root_title: str, anchor_root: str) -> Iterator[str]:
    for prefix, section in _model_sections(model, ""):
        title = f"`{prefix}`" if prefix else root_title
        anchor = f"{anchor_root}-{prefix.replace('.', '-')}" if prefix else anchor_root
        doc = inspect.cleandoc(section.__doc__ or "")
        yield f"### {title} {{#{anchor}}}\n\n{doc}\n\n{_section_table(section, prefix, anchor_root)}"


def _registry_table(registry: dict[str, Any], skip: tuple[str, ...]) -> str:
    rows = ["| name | arguments (default) | what it is |", "|---|---|---|"]
    for name, target in registry.items():
        if dataclasses.is_dataclass(target):
            params = [
                f"`{f.name}`"
                + (f" ({_code_repr(f.default)})" if f.default is not dataclasses.MISSING else "")
                for f in dataclasses.fields(target)
                if f.init and f.name not in skip
            ]
        else:
            params = []
            for p in inspect.signature(target).parameters.values():
                if p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                default = "" if p.default is p.empty else f" ({_code_repr(p.default)})"
                params.append(f"`{p.name}`{default}")
        summary = inspect.getdoc(target) or ""
        summary = summary.split("\n\n")[0]
        rows.append(f"| `{name}` | {', '.join(params)} | {_cell(summary)} |")
    return "\n".join(rows) + "\n"


def _code_repr(value: Any) -> str:
    text = repr(value)
    if len(text) > 40 or "\n" in text or "`" in text:
        text = type(value).__name__ + "(...)"
    return f"`{text}`"


def recipe_reference() -> str:
    """The recipe reference page, walked from the pydantic models and the registries."""
    import ssl_models
    from ssl_train import recipes
    from ssl_train.data import POLICIES, VIEWS
    from ssl_train.finetune_recipe import FinetuneRecipe
    from ssl_train.recipe import Recipe

    simclr = recipes.shipped_recipes()["fashion_mnist_simclr"].read_text()
    parts = [
        "# Recipe reference\n",
        "Generated at build time from the pydantic schema in `ssl_train.recipe` and "
        "`ssl_train.finetune_recipe`, and from the registries of `ssl_models` and `ssl_train.data`."
        " Every key below is all there is: an unknown key is an error that names the allowed "
        "keys. Override any value on the command line with `--set key.sub=value` (YAML "
        "scalars or lists, e.g. `--set optimizer.lr=0.3 --set encoder.widths=[16,32]`). The "
        "resolved recipe (every default written out) is saved in the run folder and beside "
        "every checkpoint.\n",
        "Start from a shipped recipe: `ssl-train recipes` lists them, "
        "`ssl-train recipes fashion_mnist_simclr > my.yaml` prints one. That one reads:\n",
        f"```yaml\n{simclr.rstrip()}\n```\n",
        "## Pretraining recipe (`ssl-train pretrain RECIPE`)\n",
        *_model_doc(Recipe, "top level", "recipe"),
        "## Free-form sections\n",
        "`encoder`, `method` and `views` are mappings with a `name` and that entry's keyword "
        "arguments; the recipe is checked by building them, so a wrong name or argument fails "
        "before training starts.\n",
        "### `encoder` {#recipe-encoder-names}\n",
        "`ssl_models.ENCODERS` (built by `ssl_models.build_encoder`):\n",
        _registry_table(ssl_models.ENCODERS, ("self",)),
        "### `method` {#recipe-method-names}\n",
        "`ssl_models.METHODS` (built by `ssl_models.build_method` around the encoder, which "
        "it passes itself):\n",
        _registry_table(ssl_models.METHODS, ("self", "encoder")),
        "### `views` {#recipe-views-names}\n",
        "`ssl_train.data.VIEWS`; `size`, `mean`, `std` and `seed` default to the recipe's "
        "`data.image_size`, `data.mean`, `data.std` and `seed`:\n",
        _registry_table(VIEWS, ()),
        "`views.policy` may be `{name: ..., **arguments}` with a name from "
        "`ssl_train.data.POLICIES`:\n",
        _registry_table(POLICIES, ("self",)),
        "## Fine-tuning recipe (`ssl-train finetune --recipe FILE`)\n",
        *_model_doc(FinetuneRecipe, "top level", "finetune"),
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# gRPC reference

_TOKEN = re.compile(
    r"""
    (?P<comment>//[^\n]*)
  | (?P<block>/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<word>[A-Za-z_][\w.]*)
  | (?P<number>-?\d+)
  | (?P<punct>[{}()\[\];=<>,])
  | (?P<newline>\n)
  | (?P<space>[ \t\r]+)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclasses.dataclass
class ProtoField:
    """One field of a message, or one value of an enum."""

    name: str
    type: str
    number: str
    label: str = ""
    oneof: str = ""
    doc: str = ""


@dataclasses.dataclass
class ProtoRpc:
    """One RPC of a service."""

    name: str
    request: str
    response: str
    doc: str = ""


@dataclasses.dataclass
class ProtoDecl:
    """A service, message or enum, with its full name (nested ones: ``Outer.Inner``)."""

    kind: str
    name: str
    doc: str = ""
    fields: list[ProtoField] = dataclasses.field(default_factory=list)
    rpcs: list[ProtoRpc] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ProtoFile:
    """A parsed .proto file."""

    path: str
    package: str = ""
    doc: str = ""
    decls: list[ProtoDecl] = dataclasses.field(default_factory=list)


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SyntaxError(f"cannot read {text[pos : pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group()))
    return out


def parse_proto(path: Path) -> ProtoFile:
    """Parse the declarations of a proto3 file with their leading (``//``) comments.

    A comment block directly above a declaration (no blank line between) documents it; a
    trailing ``// ...`` on a field's line is appended to that field's text.

    Raises:
        SyntaxError: A construct this small parser does not know.
    """
    result = ProtoFile(path=path.relative_to(ROOT).as_posix())
    toks = _tokens(path.read_text(encoding="utf-8"))
    pending: list[str] = []
    blank = 0
    stack: list[tuple[str, ProtoDecl | None, str]] = []  # (kind, decl, oneof name)
    i = 0
    last_field: ProtoField | None = None
    seen_declaration = False

    def take_doc() -> str:
        doc = "\n".join(pending).strip()
        pending.clear()
        return doc

    def statement_end(j: int) -> int:
        depth = 0
        while j < len(toks):
            kind, val = toks[j]
            if kind == "punct" and val in "{[(":
                depth += 1
            elif kind == "punct" and val in "}])":
                depth -= 1
            elif kind == "punct" and val == ";" and depth == 0:
                return j
            j += 1
        raise SyntaxError(f"{path}: unterminated statement")

    while i < len(toks):
        kind, val = toks[i]
        if kind == "newline":
            blank += 1
            if blank >= 2 and pending:
                if not seen_declaration and not result.doc:
                    result.doc = take_doc()
                pending.clear()
            last_field = None
            i += 1
            continue
        if kind == "comment":
            text = val[2:]
            text = text[1:] if text.startswith(" ") else text
            if blank == 0 and last_field is not None:  # trailing comment on a field's line
                last_field.doc = f"{last_field.doc} {text}".strip()
            else:
                pending.append(text)
            blank = 0
            i += 1
            continue
        if kind == "block":
            i += 1
            continue
        blank = 0
        words = [v for k, v in toks[i : i + 3] if k != "newline"]
        parent = stack[-1][1] if stack else None
        prefix = f"{parent.name}." if parent is not None and parent.kind == "message" else ""
        if val in ("syntax", "package", "import", "option", "reserved", "extensions"):
            if val == "syntax" and not result.doc:
                result.doc = take_doc()
            end = statement_end(i)
            if val == "package":
                result.package = "".join(v for _, v in toks[i + 1 : end])
            pending.clear()
            i = end + 1
            continue
        if val in ("service", "message", "enum") and len(words) >= 3 and words[2] == "{":
            seen_declaration = True
            decl = ProtoDecl(kind=val, name=prefix + words[1], doc=take_doc())
            result.decls.append(decl)
            stack.append((val, decl, ""))
            i = next(j for j in range(i, len(toks)) if toks[j][1] == "{") + 1
            continue
        if val == "oneof":
            oneof_doc = take_doc()
            stack.append(("oneof", parent, words[1]))
            if parent is not None and oneof_doc:
                parent.doc += f"\n\n`oneof {words[1]}`: {oneof_doc}"
            i = next(j for j in range(i, len(toks)) if toks[j][1] == "{") + 1
            continue
        if val == "}":
            stack.pop()
            pending.clear()
            i += 1
            continue
        if val == ";":
            i += 1
            continue
        if parent is None:
            raise SyntaxError(f"{path}: unexpected {val!r} at the top level")
        end = statement_end(i) if val != "rpc" else i
        if val == "rpc":
            # rpc Name ( [stream] Req ) returns ( [stream] Resp ) ( ; | { ... } )
            j = i
            names = []
            while toks[j][1] not in (";", "{"):
                if toks[j][0] == "word":
                    names.append(toks[j][1])
                j += 1
            if toks[j][1] == "{":
                depth = 0
                while True:
                    depth += {"{": 1, "}": -1}.get(toks[j][1], 0)
                    if depth == 0:
                        break
                    j += 1
            rest = [n for n in names[1:] if n != "returns"]
            req = [n for n in rest[1:] if n != "stream"]
            stream_req = "stream " if rest[1] == "stream" else ""
            stream_resp = "stream " if rest[-2] == "stream" else ""
            parent.rpcs.append(
                ProtoRpc(rest[0], stream_req + req[0], stream_resp + req[-1], take_doc())
            )
            i = j + 1
            continue
        stmt = [v for k, v in toks[i:end] if k not in ("newline", "comment", "block")]
        if parent.kind == "enum":
            field = ProtoField(name=stmt[0], type="", number=stmt[2], doc=take_doc())
        elif stmt[0] == "map":
            close = stmt.index(">")
            field = ProtoField(
                name=stmt[close + 1],
                type=f"map<{stmt[2]}, {stmt[4]}>",
                number=stmt[close + 3],
                doc=take_doc(),
            )
        else:
            label = stmt[0] if stmt[0] in ("repeated", "optional") else ""
            rest_ = stmt[1:] if label else stmt
            field = ProtoField(
                name=rest_[1], type=rest_[0], number=rest_[3], label=label, doc=take_doc()
            )
        field.oneof = stack[-1][2]
        parent.fields.append(field)
        last_field = field
        i = end + 1
    return result


def _anchor(package: str, name: str) -> str:
    return "grpc-" + re.sub(r"[^A-Za-z0-9]+", "-", f"{package}.{name}").strip("-").lower()


def _type_link(type_name: str, known: dict[str, str], package: str, scope: str) -> str:
    """Link a type to its section when it is declared in one of the files."""
    inner = re.fullmatch(r"map<(\w+), ([\w.]+)>", type_name)
    if inner:
        value = _type_link(inner.group(2), known, package, scope)
        return f"map of `{inner.group(1)}` to {value}"
    stream = ""
    if type_name.startswith("stream "):
        stream, type_name = "stream ", type_name[len("stream ") :]
    candidates = []
    parts = scope.split(".") if scope else []
    while True:  # protobuf scoping: innermost first
        candidates.append(".".join([package, *parts, type_name]))
        if not parts:
            break
        parts.pop()
    candidates.append(type_name)
    for full in candidates:
        if full in known:
            return f"{stream}[`{type_name}`](#{known[full]})"
    return f"{stream}`{type_name}`"


def grpc_reference() -> str:
    """The gRPC API reference page, parsed from ``proto/**/*.proto``."""
    files = [parse_proto(p) for p in sorted((ROOT / "proto").rglob("*.proto"))]
    known = {f"{f.package}.{d.name}": _anchor(f.package, d.name) for f in files for d in f.decls}
    parts = [
        "# gRPC API reference\n",
        "Generated at build time from the comments in `proto/` (the `.proto` files are the "
        "source of truth; `./dev run proto` regenerates the Python stubs from them). Besides "
        "these services, `ssl-serve serve` serves `grpc.health.v1.Health` (per-model service "
        "names) and server reflection, so `grpcurl` and other generic clients can list and "
        "call everything.\n",
    ]
    for f in files:
        parts.append(f"## `{f.package}` ({f.path})\n")
        if f.doc:
            parts.append(f.doc + "\n")
        for d in f.decls:
            anchor = _anchor(f.package, d.name)
            parts.append(f"### {d.kind} `{d.name}` {{#{anchor}}}\n")
            if d.doc:
                parts.append(d.doc + "\n")
            if d.kind == "service":
                parts.append("| RPC | request | response | description |\n|---|---|---|---|")
                for r in d.rpcs:
                    parts.append(
                        f"| `{r.name}` | {_type_link(r.request, known, f.package, '')} | "
                        f"{_type_link(r.response, known, f.package, '')} | {_cell(r.doc)} |"
                    )
                parts.append("")
            elif d.kind == "enum":
                parts.append("| value | number | description |\n|---|---|---|")
                for v in d.fields:
                    parts.append(f"| `{v.name}` | {v.number} | {_cell(v.doc)} |")
                parts.append("")
            elif d.fields:
                parts.append("| field | type | number | description |\n|---|---|---|---|")
                for fl in d.fields:
                    typ = _type_link(fl.type, known, f.package, d.name)
                    typ = f"{fl.label} {typ}".strip()
                    doc = (f"(oneof `{fl.oneof}`) " if fl.oneof else "") + fl.doc
                    parts.append(f"| `{fl.name}` | {_cell(typ)} | {fl.number} | {_cell(doc)} |")
                parts.append("")
            else:
                parts.append("No fields.\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------

PAGES: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_reference,
    "reference/recipe.md": recipe_reference,
    "reference/grpc.md": grpc_reference,
}


def write_pages(opener: Opener) -> None:
    """Write every generated page through ``opener(path, mode)``."""
    for path, make in PAGES.items():
        with opener(path, "w") as fh:
            fh.write(make())


def stale_pages(docs: Path) -> list[str]:
    """The generated pages whose file under ``docs`` is missing or differs from the sources."""
    return [
        path
        for path, make in PAGES.items()
        if not (docs / path).is_file() or (docs / path).read_text(encoding="utf-8") != make()
    ]


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DOCS, help="docs folder (default: docs/)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a page is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages(args.output)
        if stale:
            print(
                f"stale generated pages under {args.output}: {', '.join(stale)}; regenerate them "
                "with ./dev run docs:gen (python scripts/gen_docs.py) and commit them",
                file=sys.stderr,
            )
            return 1
        print(f"{', '.join(PAGES)} under {args.output} match the sources")
        return 0

    def opener(path: str, mode: str) -> IO[str]:
        target = args.output / path
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.open(mode, encoding="utf-8")

    write_pages(opener)
    print(f"wrote {', '.join(PAGES)} under {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
