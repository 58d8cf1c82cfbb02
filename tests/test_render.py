"""The sandboxed renderer: no Python internals, no undefined variables, bounded work."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign_tool.errors import ConfigError
from campaign_tool.render import Renderer, RenderError


def renderer(tmp_path: Path, html: str | None = None, text: str | None = "Hi {{ name }}",
             subject: str = "Hello {{ name }}", **kwargs: object) -> Renderer:
    paths: dict[str, Path | None] = {"html": None, "text": None}
    for kind, source in (("html", html), ("text", text)):
        if source is not None:
            path = tmp_path / f"body.{kind}"
            path.write_text(source, encoding="utf-8")
            paths[kind] = path
    return Renderer(config_file=tmp_path / "campaign.toml", subject=subject,
                    html=paths["html"], text=paths["text"], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ name.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ ''|attr('__class__') }}",
    "{{ 'x'.format.__self__ }}",
])
def test_template_reaching_python_internals_is_refused(tmp_path: Path, template: str) -> None:
    with pytest.raises(RenderError) as caught:
        renderer(tmp_path, text=template).render({"name": "Alice"})
    assert caught.value.code in {"template-unsafe", "template-undefined"}


def test_undefined_variable_is_an_error_naming_template_and_line(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as caught:
        renderer(tmp_path, text="line one\n{{ first_nme }}\n").render({"name": "A"})
    error = caught.value
    assert error.code == "template-undefined"
    assert "'first_nme' is undefined" in error.message
    assert error.file == tmp_path / "body.text" and error.line == 2


def test_html_is_autoescaped_and_text_is_not(tmp_path: Path) -> None:
    r = renderer(tmp_path, html="<p>{{ name }}</p>", text="{{ name }}")
    rendered = r.render({"name": "<script>x</script> & Co"})
    assert rendered.html == "<p>&lt;script&gt;x&lt;/script&gt; &amp; Co</p>"
    assert rendered.text == "<script>x</script> & Co"
    assert rendered.subject == "Hello <script>x</script> & Co"


def test_include_outside_the_template_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="passwd"):
        renderer(tmp_path, text="{% include '/etc/passwd' %}").render({"name": "A"})
    with pytest.raises(RenderError, match="passwd"):
        renderer(tmp_path, text="{% include '../../../../etc/passwd' %}").render({"name": "A"})


def test_include_inside_the_template_folder_works(tmp_path: Path) -> None:
    (tmp_path / "footer.txt").write_text("-- {{ name }}", encoding="utf-8")
    r = renderer(tmp_path, text="Hi\n{% include 'footer.txt' %}")
    assert r.render({"name": "Ann"}).text == "Hi\n-- Ann"


@pytest.mark.parametrize("template", [
    "{{ 'x' * 100000000 }}",
    "{{ ['x'] * 100000000 }}",
    "{{ 9 ** 99999999 }}",
])
def test_operator_building_a_huge_value_is_refused(tmp_path: Path, template: str) -> None:
    with pytest.raises(RenderError) as caught:
        renderer(tmp_path, text=template, max_output=1_000_000).render({"name": "A"})
    assert caught.value.code == "template-unsafe"


def test_output_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    template = "{% for i in range(2000) %}{{ 'x' * 999 }}{% endfor %}"
    with pytest.raises(RenderError) as caught:
        renderer(tmp_path, text=template, max_output=1_000_000).render({"name": "A"})
    assert caught.value.code == "message-too-large"


def test_render_that_runs_too_long_is_stopped(tmp_path: Path) -> None:
    template = ("{% for i in range(100000) %}{% for j in range(100000) %}"
                "{% endfor %}{% endfor %}")
    with pytest.raises(RenderError) as caught:
        renderer(tmp_path, text=template, timeout=0.3).render({"name": "A"})
    assert caught.value.code == "template-timeout"


def test_syntax_error_in_a_template_file_is_a_config_error_with_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        renderer(tmp_path, text="ok\n{% if %}\n")
    finding = caught.value.findings[0]
    assert finding.code == "template-syntax" and finding.line == 2


def test_syntax_error_in_the_subject_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="campaign.subject"):
        renderer(tmp_path, subject="{{ oops")


def test_missing_template_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="template not found"):
        Renderer(config_file=tmp_path / "c.toml", subject="s", html=None,
                 text=tmp_path / "missing.txt")


def test_row_data_cannot_be_mutated_by_a_template(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as caught:
        renderer(tmp_path, text="{{ items.append('x') }}").render({"name": "A", "items": []})
    assert caught.value.code == "template-unsafe"
