"""The sandboxed Jinja environment, compiled once; render one recipient at a time.

Templates run in Jinja's immutable sandbox with undefined variables as errors
and autoescaping for HTML only. The sandbox blocks Python internals but bounds
neither size nor time, so this module adds both: operators that would build an
oversized string are refused, output is measured, and on the main thread a
timer stops a render that runs too long.
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from campaign_tool.errors import ConfigError
from campaign_tool.findings import Finding


class RenderError(Exception):
    """One recipient's message could not be rendered; says where and why."""

    def __init__(self, code: str, message: str, *, file: Path | None = None,
                 line: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.file, self.line = code, message, file, line


class _RenderTimeout(BaseException):
    """Raised by the timer inside a render; BaseException so templates can't catch it."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """The per-recipient texts of one message, before encoding."""

    subject: str
    text: str | None
    html: str | None


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, refusing operators that would build huge values."""

    intercepted_binops = frozenset({"*", "+", "**"})
    max_output = 10_000_000

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) \
                        and len(seq) * times > self.max_output:
                    raise SecurityError(
                        f"'*' would build a value of {len(seq) * times:,} items; "
                        f"the limit is {self.max_output:,}")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)) \
                    and len(left) + len(right) > self.max_output:
                raise SecurityError(f"'+' would build a value over {self.max_output:,} items")
        elif operator == "**" and isinstance(right, int) and abs(right) > 1024:
            raise SecurityError(f"'**' with an exponent of {right} is refused")
        return super().call_binop(context, operator, left, right)


class _CampaignLoader(BaseLoader):
    """Loads the campaign's entry templates by name, and includes from their folders.

    Includes resolve inside the template folders only: ``FileSystemLoader``
    refuses ``..`` and absolute paths, so ``{% include '/etc/passwd' %}`` fails.
    """

    def __init__(self, entries: Mapping[str, Path]) -> None:
        self.entries = dict(entries)
        folders = list(dict.fromkeys(path.parent for path in entries.values()))
        self._includes = FileSystemLoader([str(f) for f in folders])

    def get_source(self, environment: Environment,
                   template: str) -> tuple[str, str | None, Callable[[], bool]]:
        path = self.entries.get(template)
        if path is None:
            return self._includes.get_source(environment, template)
        try:
            source = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise TemplateNotFound(template) from None
        return source, str(path), lambda: True


class Renderer:
    """Compiled templates of one campaign; :meth:`render` fills them for one row.

    ``subject`` and ``unsubscribe_url`` are template strings from the campaign
    file; ``html`` and ``text`` are template files. Compile errors raise
    :class:`ConfigError` naming the file and line.
    """

    def __init__(self, *, config_file: Path, subject: str, html: Path | None,
                 text: Path | None, unsubscribe_url: str | None = None,
                 max_output: int = 10_000_000, timeout: float = 5.0) -> None:
        self.config_file = config_file
        self.max_output = max_output
        self.timeout = timeout
        entries = {str(p): p for p in (html, text) if p is not None}
        loader = _CampaignLoader(entries)
        common = {"loader": loader, "undefined": StrictUndefined, "auto_reload": False,
                  "keep_trailing_newline": True, "cache_size": 400}
        self._text_env = _BoundedSandbox(autoescape=False, **common)
        self._html_env = _BoundedSandbox(autoescape=True, **common)
        for env in (self._text_env, self._html_env):
            env.max_output = max_output
        self._subject = self._compile_string(self._text_env, subject, "campaign.subject")
        self._url = (self._compile_string(self._text_env, unsubscribe_url, "unsubscribe.url")
                     if unsubscribe_url is not None else None)
        self._html = self._load(self._html_env, html) if html is not None else None
        self._text = self._load(self._text_env, text) if text is not None else None
        self.template_files = tuple(entries.values())

    def _compile_string(self, env: Environment, source: str, key: str) -> Template:
        try:
            return _flatten_globals(env.from_string(source))
        except TemplateSyntaxError as error:
            finding = Finding("template-syntax",
                              f"key '{key}': template syntax error: {error.message}",
                              file=self.config_file)
            raise ConfigError(finding.describe(), findings=[finding]) from None

    def _load(self, env: Environment, path: Path) -> Template:
        try:
            return _flatten_globals(env.get_template(str(path)))
        except TemplateNotFound as error:
            where = path if str(path) == error.name else Path(str(error.name))
            finding = Finding("template-missing",
                              f"template not found: {where}", file=path)
            raise ConfigError(finding.describe(), findings=[finding]) from None
        except TemplateSyntaxError as error:
            file = Path(error.filename) if error.filename else path
            finding = Finding("template-syntax", f"template syntax error: {error.message}",
                              file=file, line=error.lineno)
            raise ConfigError(finding.describe(), findings=[finding]) from None
        except (OSError, UnicodeDecodeError) as error:
            finding = Finding("template-unreadable", f"cannot read template: {error}",
                              file=path)
            raise ConfigError(finding.describe(), findings=[finding]) from None

    def render_unsubscribe_url(self, context: Mapping[str, Any]) -> str | None:
        """The recipient's unsubscribe URL, or None when none is configured."""
        if self._url is None:
            return None
        try:
            with _time_limit(self.timeout):
                return self._run(self._url, context, "unsubscribe.url")
        except _RenderTimeout:
            raise self._timeout() from None

    def render(self, context: Mapping[str, Any]) -> Rendered:
        """Render subject and bodies for one recipient; :class:`RenderError` if not.

        One time limit covers the whole message.
        """
        try:
            with _time_limit(self.timeout):
                subject = self._run(self._subject, context, "campaign.subject")
                text = self._run(self._text, context, None) if self._text is not None else None
                html = self._run(self._html, context, None) if self._html is not None else None
        except _RenderTimeout:
            raise self._timeout() from None
        return Rendered(subject=subject, text=text, html=html)

    def _timeout(self) -> RenderError:
        return RenderError("template-timeout",
                           f"rendering took longer than {self.timeout:g} s ([limits] "
                           "render_timeout)", file=self.template_files[0]
                           if self.template_files else self.config_file)

    def _run(self, template: Template, context: Mapping[str, Any], key: str | None) -> str:
        try:
            output = template.render(context)
        except SecurityError as error:
            raise self._error("template-unsafe", f"refused by the sandbox: {error}", key,
                              template, error) from None
        except UndefinedError as error:
            raise self._error("template-undefined", f"{error.message}", key,
                              template, error) from None
        except TemplateError as error:
            raise self._error("template-error", f"{error.message or error}", key,
                              template, error) from None
        except Exception as error:  # noqa: BLE001 - anything a template does wrong
            raise self._error("template-error", f"{type(error).__name__}: {error}", key,
                              template, error) from None
        if len(output) > self.max_output:
            raise self._error("message-too-large",
                              f"rendered {len(output):,} characters; the limit is "
                              f"{self.max_output:,} ([limits] max_message_bytes)", key,
                              template, None)
        return output

    def _error(self, code: str, message: str, key: str | None, template: Template,
               error: BaseException | None) -> RenderError:
        if key is not None:
            return RenderError(code, f"key '{key}': {message}", file=self.config_file)
        file, line = _template_position(error, template)
        return RenderError(code, message, file=file, line=line)


def _flatten_globals(template: Template) -> Template:
    """Make the template's globals a plain dict instead of a ChainMap.

    Every render copies them into the context; copying a ChainMap is a Python
    loop (about a quarter of a small template's render time), a dict a C one.
    The environment's globals are never changed after set-up.
    """
    template.globals = dict(template.globals)
    return template


def _template_position(error: BaseException | None,
                       template: Template) -> tuple[Path | None, int | None]:
    """The template file and line an error came from (Jinja rewrites tracebacks)."""
    default = Path(template.filename) if template.filename else None
    if error is None or error.__traceback__ is None:
        return default, None
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.endswith((".py", ".pyc")) or frame.filename.startswith("<"):
            continue
        return Path(frame.filename), frame.lineno
    return default, None


class _time_limit:  # noqa: N801 - used like a function: ``with _time_limit(s):``
    """Raise :class:`_RenderTimeout` if the block runs longer than ``seconds``.

    Uses SIGALRM, so it only arms on the main thread of a POSIX process; off the
    main thread renders are bounded by size alone.
    """

    __slots__ = ("_armed", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._armed = False

    def __enter__(self) -> None:
        global _alarm_installed
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            # Installed once and left in place: it only acts on our own timer.
            if not _alarm_installed:
                signal.signal(signal.SIGALRM, _on_alarm)
                _alarm_installed = True
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
            self._armed = True

    def __exit__(self, *exc: object) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)


_alarm_installed = False


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _RenderTimeout
