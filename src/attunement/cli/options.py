"""Options declared once: built from the settings models' fields, or shared bundles.

Why: a default, a bound or a help sentence written twice drifts (the
``--temperature`` help of ``train grpo`` once allowed 0 where its settings
refused it). So an option that sets a field of a settings model is built
*from* that field by :func:`field_option`: its default, its bounds (open ones
included) and its description are the field's, and the help machinery shows
the default, so no help text restates one. Options that travel together
through several verbs (how to run a model, how to build a reward, the fields
of one settings model) are a :class:`Bundle`: :func:`verb` splices its options
into a verb's signature and hands the verb one object built from them.

Names mean one thing across verbs (docs/cli.md): ``--judge`` the judge model,
``--policy`` the model that answers, ``--model`` the model that builds, trains
or is talked to, ``-k/--samples`` judge samples, ``--top-k`` retrieved
memories, ``--limit`` the first N input records, ``--memory`` what the policy
sees of the user's memories. An old spelling keeps working for one release
through ``verb(renamed=...)``: it is rewritten before parsing, with one
deprecation line (:class:`attunement.cli.errors.AttuneCommand`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import annotated_types
import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from attunement.cli.common import say
from attunement.cli.paths import PathKind, path_check
from attunement.llm import STAND_IN_NOTE, LLMOptions, is_stand_in, stand_in_line
from attunement.policy import SHOW_PERSONA, SHOW_SITUATION, PromptContext

#: the default of an option is its field's
FROM_FIELD: Any = object()
#: help texts that are field descriptions (they may explain what a default means)
FIELD_HELP: set[str] = set()
#: how a model spec is written (docs/llm.md)
SPEC_FORMS = "local, local:FILE.gguf, openai:URL#model, hf:DIR"
KEYWORD = inspect.Parameter.KEYWORD_ONLY
#: what a path option must be: an existing file, folder or either, or a new file or folder


# --------------------------------------------------------------------------- fields


def _field(model: type, name: str) -> Any:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model.model_fields[name]
    [found] = [f for f in dataclasses.fields(model) if f.name == name]
    return found


def field_default(model: type, name: str) -> Any:
    """A pydantic or dataclass field's default (``...`` when the field is required)."""
    f = _field(model, name)
    factory = f.default_factory
    if factory not in (None, dataclasses.MISSING):
        return factory()
    if f.default in (PydanticUndefined, dataclasses.MISSING):
        return ...
    return f.default


def field_annotation(model: type, name: str) -> Any:
    if issubclass(model, BaseModel):
        return model.model_fields[name].annotation
    return typing.get_type_hints(model)[name]


def sentence(text: str) -> str:
    """A description as a help sentence: a leading plain word capitalised (not
    a value such as ``json:`` or ``perm |``), a full stop at the end.

    >>> sentence("requests in flight at once"), sentence("json: schema-constrained letters")
    ('Requests in flight at once.', 'json: schema-constrained letters.')
    """
    text = text.strip()
    if re.match(r"[a-z]+[ ,][a-z(]", text):
        text = text[0].upper() + text[1:]
    return text + ("" if text.endswith((".", "?")) else ".")


def _shown(value: Any) -> str | bool:
    """What ``[default: ...]`` says for a value (nothing for None, False, empty)."""
    if value is None or value is False or value == [] or value is ...:
        return False
    return str(value)


def field_option(
    model: type,
    name: str,
    *decls: str,
    help: str | None = None,
    default: Any = FROM_FIELD,
    unset: bool = False,
    shown: str | None = None,
    **extra: Any,
) -> Any:
    """A typer option for ``model.name``: its default, bounds and description.

    ``unset=True`` makes the option's own default None ("not given", for verbs
    that layer flags over a settings file) while the help still shows the
    field's default (or ``shown``). ``help`` replaces a missing or unfit
    description; ``decls`` default to ``--field-name``.
    """
    value = field_default(model, name) if default is FROM_FIELD else default
    description = None
    if issubclass(model, BaseModel):
        description = model.model_fields[name].description
    if help is None and description:
        help = sentence(description)
        FIELD_HELP.add(help)
    if not help:
        raise TypeError(f"{model.__name__}.{name} has no description: pass help=")
    decls = decls or (f"--{name.replace('_', '-')}",)
    # the default itself when the option has it; the field's, described, when it counts only if given
    show: str | bool = shown if shown is not None else (_shown(value) if unset else True)
    if field_bounds(model, name) and "parser" not in extra:
        flag = next((d for d in decls if d.startswith("--")), decls[0]).split("/")[0]
        extra["parser"] = field_parser(model, name, flag)
    info = typer.Option(None if unset else value, *decls, help=help, show_default=show, **extra)
    info.attune_field = (model, name)
    return info


def field_bounds(model: type, name: str) -> dict[str, Any]:
    """A numeric field's bounds: ``{"ge": 0.0, "le": 2.0}`` (empty: none).

    >>> from attunement.judging import RewardConfig
    >>> field_bounds(RewardConfig, "temperature"), field_bounds(RewardConfig, "softmin_beta")
    ({'ge': 0.0, 'le': 2.0}, {'gt': 0.0})
    """
    if not issubclass(model, BaseModel):
        return {}
    found: dict[str, Any] = {}
    for m in model.model_fields[name].metadata:
        for key in ("ge", "gt", "le", "lt"):
            if isinstance(m, getattr(annotated_types, key.capitalize())):
                found[key] = getattr(m, key)
    return found


def describe_bounds(bounds: dict[str, Any]) -> str | None:
    """How the help shows bounds (as typer shows its own ranges).

    >>> describe_bounds({"gt": 0.0}), describe_bounds({"ge": 1, "le": 64}), describe_bounds({})
    ('x>0.0', '1<=x<=64', None)
    """
    low = next(((bounds[k], a, b) for k, a, b in LOWER if k in bounds), None)
    high = next(((bounds[k], op) for k, op in UPPER if k in bounds), None)
    if low and high:
        return f"{low[0]}{low[2]}x{high[1]}{high[0]}"
    if low:
        return f"x{low[1]}{low[0]}"
    return f"x{high[1]}{high[0]}" if high else None


#: lower bounds: (field key, as ``x>=1``, as ``1<=x``); upper bounds: (key, ``x<=2``)
LOWER = (("ge", ">=", "<="), ("gt", ">", "<"))
UPPER = (("le", "<="), ("lt", "<"))


def field_parser(model: type, name: str, flag: str) -> Callable[[Any], Any]:
    """Read an option's text with the field's own type and constraints, so the
    command line refuses exactly what the settings refuse (an exit-2 usage error
    naming ``flag``)."""
    annotation = model.model_fields[name].annotation
    kinds = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    adapter = TypeAdapter(Annotated[kinds[0], *model.model_fields[name].metadata])

    def parse(text: Any) -> Any:
        try:
            return adapter.validate_python(text)
        except ValidationError as exc:
            message = str(exc.errors()[0].get("msg", "invalid"))
            raise typer.BadParameter(message, param_hint=f"'{flag}'") from None

    return parse


def _field_sources(callback: Callable[..., Any] | None) -> dict[str, tuple[type, str]]:
    if callback is None:
        return {}
    found = {}
    for p in inspect.signature(callback).parameters.values():
        ref = getattr(p.default, "attune_field", None)
        if ref is not None:
            found[p.name] = ref
    return found


def apply_field_types(command: Any) -> None:
    """Remember on each field-built option of ``command`` its field, and show
    the field's bounds in the help (``x>0.0``, ``1<=x<=64``)."""
    sources = _field_sources(command.callback)
    for param in command.params:
        ref = sources.get(param.name or "")
        if ref is None:
            continue
        param.attune_field = ref
        shown = describe_bounds(field_bounds(*ref))
        if shown is not None:
            param._get_number_range_help_str = lambda shown=shown: shown  # typer's range slot


# --------------------------------------------------------------------------- bundles


@dataclass(frozen=True)
class Bundle:
    """Options that travel together, read into one object by ``build``."""

    params: tuple[inspect.Parameter, ...]
    build: Callable[..., Any]


def _built(values: dict[str, Any], bundles: Mapping[str, Bundle]) -> dict[str, Any]:
    """``values`` with each bundle's option values replaced by the bundle's object."""
    for name, bundle in bundles.items():
        values[name] = bundle.build(**{p.name: values.pop(p.name) for p in bundle.params})
    return values


def option(name: str, annotation: Any, info: Any) -> inspect.Parameter:
    """One option of a bundle: python name, type, typer option."""
    return inspect.Parameter(name, KEYWORD, default=info, annotation=annotation)


def verb(
    *, renamed: Mapping[str, str] | None = None, **bundles: Bundle
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Splice bundles into a verb: each parameter named like a bundle becomes
    the bundle's options on the command line and the bundle's object in the
    call. ``renamed`` maps old spellings to new ones (``{"--k": "--clusters"}``)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        params: list[inspect.Parameter] = []
        for p in sig.parameters.values():
            params.extend(
                bundles[p.name].params if p.name in bundles else [p.replace(kind=KEYWORD)]
            )
        names = [p.name for p in params]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise TypeError(f"{fn.__name__}: options declared twice: {', '.join(twice)}")

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            return fn(**_built(kwargs, bundles))

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        wrapper.renamed = dict(renamed or {})  # type: ignore[attr-defined]
        return wrapper

    return decorate


def compose(build: Callable[..., Any], *params: inspect.Parameter, **parts: Bundle) -> Bundle:
    """One bundle of its own ``params`` and whole bundles (``parts``): ``build``
    receives the own options' values and each part's object by its name."""

    def build_all(**values: Any) -> Any:
        return build(**_built(values, parts))

    return Bundle(params + tuple(p for part in parts.values() for p in part.params), build_all)


def fields_bundle(
    model: type,
    *names: str,
    unset: bool = False,
    decls: Mapping[str, tuple[str, ...]] | None = None,
    helps: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    shown: Mapping[str, str] | None = None,
    paths: Mapping[str, PathKind] | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> Bundle:
    """Options for fields of one settings model, read into ``{field: value}``
    (with ``unset``: only the options given). ``decls``, ``helps``,
    ``defaults`` and ``shown`` are :func:`field_option`'s, per field; ``paths``
    names path fields checked before the verb runs (:func:`check_path`);
    ``extra`` passes typer settings (``min=1`` for a dataclass field, which
    has no bounds of its own)."""
    decls, helps, defaults, shown = decls or {}, helps or {}, defaults or {}, shown or {}
    checks = {name: {"callback": path_check(kind)} for name, kind in (paths or {}).items()}
    for name, settings in (extra or {}).items():
        checks[name] = {**checks.get(name, {}), **settings}

    def annotation(name: str) -> Any:
        kind = field_annotation(model, name)
        return kind | None if unset and type(None) not in typing.get_args(kind) else kind

    params = tuple(
        option(
            name,
            annotation(name),
            field_option(
                model,
                name,
                *decls.get(name, ()),
                help=helps.get(name),
                default=defaults.get(name, FROM_FIELD),
                unset=unset,
                shown=shown.get(name),
                **checks.get(name, {}),
            ),
        )
        for name in names
    )

    def build(**values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if not (unset and v is None)}

    return Bundle(params, build)


# --------------------------------------------------------------------------- shared options


#: what ``--memory`` means on every verb that has it (its choices are the verb's)
MEMORY_HELP = "What the policy sees of the user's memories."


def labelled_option(flag: str, help: str, *, metavar: str = "[LABEL=]PATH") -> Any:
    """A repeatable ``[LABEL=]VALUE`` option (``evaluate --data/--replies/--judge``)."""
    return typer.Option(None, flag, metavar=metavar, help=help)


def limit_option() -> Any:
    return typer.Option(
        None, "--limit", min=1, help="Use the first N input records only (a quick look, a test)."
    )


def skip_invalid_option() -> Any:
    return typer.Option(
        False, "--skip-invalid", help="Skip bad input lines (written to a .rejects.jsonl file)."
    )


def seed_option(help: str = "Sampling seed.") -> Any:
    return typer.Option(0, "--seed", help=help)


#: why ``--judge`` has no default: numbers from a forgotten option must not look real
JUDGE_HELP = (
    f"The judge model ({SPEC_FORMS}); required: 'local' is the embedded 135M stand-in, "
    "whose numbers are not meaningful."
)


def judge_option(default: Any = ..., help: str | None = None) -> Any:
    return typer.Option(default, "--judge", metavar="SPEC", help=help or JUDGE_HELP)


def warn_if_stand_in(*specs: str | None) -> None:
    """Say so when the embedded stand-in judges (``--judge local``)."""
    if any(is_stand_in(spec) for spec in specs):
        say(STAND_IN_NOTE, style="yellow")


def say_stand_in(manifest: Any) -> None:
    """Under a summary: the stand-in's note, when the manifest written carries it."""
    if line := stand_in_line(manifest):
        say(line, style="yellow")


def policy_option(default: Any = ..., help: str | None = None) -> Any:
    return typer.Option(
        default,
        "--policy",
        metavar="SPEC",
        help=help or f"The model that answers ({SPEC_FORMS}).",
    )


def model_option(default: Any = "local", help: str | None = None) -> Any:
    return typer.Option(
        default,
        "--model",
        "-m",
        metavar="SPEC",
        help=help or f"The model that builds ({SPEC_FORMS}).",
    )


def first(records: list[Any], limit: int | None) -> list[Any]:
    """The first ``limit`` records (all of them when ``limit`` is None)."""
    return records if limit is None else records[:limit]


# --------------------------------------------------------------------------- running models


@dataclass(frozen=True)
class ModelRun:
    """How to run the verb's models: the ``-c/--concurrency``, ``--timeout``,
    ``--retries``, ``--cache`` and ``--no-cache`` options of every model verb."""

    concurrency: int | None
    timeout: float | None
    retries: int | None
    cache: Path | None
    no_cache: bool

    def options(self, default_cache: Path | None = None, **extra: Any) -> LLMOptions:
        """The LLM options (a verb's own cache file when ``--cache`` is not given)."""
        given = {
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "max_retries": self.retries,
            **extra,
        }
        cache = None if self.no_cache else (self.cache or default_cache)
        return LLMOptions(cache=cache, **{k: v for k, v in given.items() if v is not None})

    def given(self) -> dict[str, Any]:
        """The LLM option fields set on the command line (for layering over a file)."""
        fields = {"concurrency": self.concurrency, "timeout": self.timeout}
        fields |= {"max_retries": self.retries, "cache": self.cache}
        given = {k: v for k, v in fields.items() if v is not None}
        return given | {"cache": None} if self.no_cache else given


def param_default(fn: Callable[..., Any], name: str) -> Any:
    """The default of a library function's parameter (so a verb does not repeat it)."""
    return inspect.signature(fn).parameters[name].default


def model_run(
    *,
    concurrency: tuple[type, str] | int | None = None,
    timeout: float | None = None,
    unset: bool = False,
) -> Bundle:
    """The :class:`ModelRun` options. ``concurrency`` names a verb's settings
    field whose default (and meaning) the option takes, or is the default of
    the library call it feeds; ``timeout`` is a verb's own default; ``unset``
    leaves every option None unless given."""
    if isinstance(concurrency, tuple):
        model, name = concurrency
        described = (
            model.model_fields[name].description
            or LLMOptions.model_fields["concurrency"].description
        )
        conc = field_option(
            model, name, "--concurrency", "-c", unset=unset, help=sentence(described)
        )
    else:
        given = FROM_FIELD if concurrency is None else concurrency
        conc = field_option(
            LLMOptions, "concurrency", "--concurrency", "-c", default=given, unset=unset
        )
    params = (
        option("concurrency", int | None, conc),
        option(
            "timeout",
            float | None,
            field_option(
                LLMOptions,
                "timeout",
                default=timeout if timeout is not None else FROM_FIELD,
                unset=unset,
                shown=None if timeout is None else str(timeout),
            ),
        ),
        option(
            "retries", int | None, field_option(LLMOptions, "max_retries", "--retries", unset=unset)
        ),
        option("cache", Path | None, field_option(LLMOptions, "cache", "--cache")),
        option(
            "no_cache",
            bool,
            typer.Option(False, "--no-cache", help="Do not read or write a completion cache."),
        ),
    )
    return Bundle(params, ModelRun)


# --------------------------------------------------------------------------- the policy prompt


@dataclass(frozen=True)
class ShownFlags:
    """``--persona/--no-persona`` and ``--situation/--no-situation`` as given
    (None: not given, so the run's recorded setting or the default applies)."""

    persona: bool | None
    situation: bool | None

    def given(self) -> dict[str, bool]:
        """The switches set on the command line, by :class:`PromptContext` field name."""
        both = {"persona": self.persona, "situation": self.situation}
        return {k: v for k, v in both.items() if v is not None}


#: the old spellings of generate and distill
SHOWN_RENAMED = {
    f"--{no}with-{x}": f"--{no}{x}" for x in ("persona", "situation") for no in ("", "no-")
}


def shown_options() -> Bundle:
    """What the policy prompt shows besides the memories and the query, the same
    two options on every verb that shows a policy a prompt (generate, distill,
    converse, train grpo, export verl|openrlhf). Not given, the setting is the
    one a trained run recorded (generate, distill, converse with ``hf:RUN``) or
    the one default of :mod:`attunement.policy.context`."""

    params = tuple(
        option(
            name,
            bool | None,
            field_option(
                PromptContext,
                name,
                f"--{name}/--no-{name}",
                unset=True,
                help=f"Show the user's {name} in the policy prompt (the papers' policy "
                "sees memories and query only).",
                shown="on" if default else "off",
            ),
        )
        for name, default in (("persona", SHOW_PERSONA), ("situation", SHOW_SITUATION))
    )
    return Bundle(params, ShownFlags)
