"""Boolean switches mean what they say in configs and on the command line, or are refused with their name."""

import json
import re

import pytest
from monai.bundle import ConfigParser

from camcontrast_monai.apps.bundle import bundle_names, bundle_path
from camcontrast_monai.apps.cli import coerce_switches
from camcontrast_monai.utils import as_switch


@pytest.mark.parametrize("value,expected", [
    (True, True), (False, False), (1, True), (0, False), ("true", True), ("false", False), ("True", True),
    ("False", False), ("TRUE", True), ("1", True), ("0", False), (" false ", False),
])  # fmt: skip
def test_boolean_spellings_become_booleans(value, expected):
    assert as_switch(value, "x") is expected


@pytest.mark.parametrize("value", ["no", "off", "", "None", None, 2, -1, 0.5, "yes"])
def test_anything_else_is_refused_with_the_switch_name(value):
    with pytest.raises(ValueError, match="switch 'negative_suppression' takes true or false"):
        as_switch(value, "negative_suppression")


def _configs():
    for name in bundle_names():
        for path in sorted((bundle_path(name) / "configs").glob("*.json")):
            yield path, json.loads(path.read_text())


def _switch_names() -> set[str]:
    """Top-level keys of any bundle config whose default is a boolean (MONAI's own '#' paths excluded)."""
    return {key for _, config in _configs() for key, value in config.items() if isinstance(value, bool) and "#" not in key}


def test_every_reference_to_a_switch_goes_through_as_switch():
    switches = _switch_names()
    assert {"negative_suppression", "background_suppression", "multilabel", "channels_last", "discard_normal"} <= switches
    # resolve_batched_augmentation passes anything but "auto" through as_switch itself
    reference = re.compile(r"(as_switch\(|resolve_batched_augmentation\()?@(" + "|".join(sorted(switches)) + r")(?![\w#])")
    unguarded = [
        f"{path.parent.parent.name}/{path.name}: {match.group(0)}"
        for path, _ in _configs()
        for match in reference.finditer(path.read_text())
        if not match.group(1)
    ]
    assert not unguarded, "wrap these in as_switch(@name, 'name'):\n" + "\n".join(unguarded)


@pytest.mark.parametrize("value,classes", [("false", 2), ("False", 2), ("0", 2), ("true", 5), ("True", 5), ("1", 5)])
def test_a_config_switch_from_the_command_line_means_what_it_says(value, classes):
    # multilabel stage 1 learns the five CXR findings the synthetic data draws (stage1_classes)
    parser = ConfigParser()
    parser.read_config(str(bundle_path("cxr") / "configs" / "common.json"))
    parser["multilabel"] = value  # what fire passes for --multilabel VALUE
    assert parser.get_parsed_content("stage1_num_classes") == classes


def test_a_config_switch_with_another_value_is_refused_by_name():
    parser = ConfigParser()
    parser.read_config(str(bundle_path("cxr") / "configs" / "common.json"))
    parser["multilabel"] = "yes"
    with pytest.raises(RuntimeError) as raised:
        parser.get_parsed_content("stage1_num_classes")
    assert "switch 'multilabel' takes true or false" in str(raised.value.__cause__ or raised.value)


def test_cli_commands_coerce_their_boolean_flags():
    @coerce_switches
    class Commands:
        def run(self, steps: int = 1, quick: bool = False, report_only: bool = True):
            return steps, quick, report_only

    assert Commands().run(2, "false", report_only="True") == (2, False, True)
    assert Commands().run() == (1, False, True)
    with pytest.raises(SystemExit, match="switch '--quick' takes true or false"):
        Commands().run(quick="nope")
