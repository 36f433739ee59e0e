"""Lab YAML files: the bundled labs load, bad files are refused whole with lines and names."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES

from optialloc.errors import InputError
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.inventory.lab_file import LabError, load_lab, load_lab_file, parse_lab


def test_demo_lab() -> None:
    nodes = load_lab(FIXTURES / "labs" / "demo.yaml")
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.machine_type] = counts.get(node.machine_type, 0) + 1
    assert counts == {"smithi": 8, "mira": 4, "gibba": 2}
    smithi = next(n for n in nodes if n.name == "smithi001")
    assert (smithi.os_type, smithi.os_version, smithi.arch) == ("ubuntu", "22.04", "x86_64")
    assert smithi.ssh_pub_key and smithi.ssh_pub_key.startswith("ssh-ed25519 ")
    assert [n.name for n in nodes if not n.up] == ["mira004"]


def test_sepia_lab_expands_groups() -> None:
    lab = load_lab_file(FIXTURES / "labs" / "sepia.yaml")
    assert lab.name == "sepia"
    names = [n.name for n in lab.nodes]
    assert len(names) == 340 == len(set(names))
    assert names[0] == "smithi001" and "smithi200" in names and "smithi201" not in names
    assert sum(n.machine_type == "gibba" and n.arch == "aarch64" for n in lab.nodes) == 40


def test_group_numbering() -> None:
    lab = parse_lab("groups:\n- {machine_type: t, count: 3, prefix: n-, start: 9, digits: 2}\n")
    assert [n.name for n in lab.nodes] == ["n-09", "n-10", "n-11"]
    assert all(n.machine_type == "t" and n.up for n in lab.nodes)


def problems(text: str) -> list[str]:
    with pytest.raises(LabError) as caught:
        parse_lab(text, "bad.yaml")
    assert "nothing imported" in str(caught.value)
    return caught.value.problems


def test_duplicate_names_name_both_lines() -> None:
    found = problems(
        "nodes:\n"
        "- {name: smithi001, machine_type: smithi}\n"
        "- {name: smithi002, machine_type: smithi}\n"
        "groups:\n"
        "- {machine_type: smithi, count: 2, prefix: smithi, digits: 3}\n"
    )
    assert found == [
        "line 5: duplicate node name smithi001 (first defined on line 2): "
        "rename one or shrink the group",
        "line 5: duplicate node name smithi002 (first defined on line 3): "
        "rename one or shrink the group",
    ]


def test_unknown_keys_are_named_with_their_line() -> None:
    found = problems(
        "name: x\nowner: me\nnodes:\n"
        "- {name: a1, machine_type: a}\n"
        "- name: a2\n  machine_tpye: a\n"
        "groups:\n- {machine_type: b, count: 2, colour: red}\n"
    )
    assert "top level: unknown key 'owner'" in found[0]
    assert any(p.startswith("line 5 (node a2): unknown key 'machine_tpye'") for p in found)
    assert any(p.startswith("line 5 (node a2): node has no machine_type") for p in found)
    assert any(p.startswith("line 8 (group b): unknown key 'colour'") for p in found)


def test_node_without_machine_type() -> None:
    found = problems("nodes:\n- {name: lonely}\n")
    assert found == [
        "line 2 (node lonely): node has no machine_type: add machine_type: <type>, e.g. smithi"
    ]


def test_values_of_the_wrong_type() -> None:
    found = problems(
        "nodes:\n- {name: a, machine_type: t, os_version: 22.04, up: maybe}\n"
        "groups:\n- {machine_type: t, count: 0}\n- {machine_type: t, count: 2, digits: x}\n"
        "- just a string\n"
    )
    assert "line 2 (node a): up must be true or false, got 'maybe'" in found
    assert (
        "line 2 (node a): os_version 22.04 must be text: quote it, e.g. os_version: '22.04'"
        in found
    )
    assert "line 4 (group t): count must be an integer >= 1, got 0" in found
    assert "line 5 (group t): digits must be an integer >= 1, got 'x'" in found
    assert any(p.startswith("groups[2]: expected a mapping") for p in found)


def test_a_key_given_twice_is_refused() -> None:
    found = problems("nodes:\n- name: a\n  machine_type: t\n  name: b\n")
    assert found[0] == "line 4: key 'name' appears twice in one mapping"


def test_not_yaml_and_empty_files() -> None:
    assert problems("nodes: [\n")[0].startswith("not valid YAML")
    assert problems("name: empty\n") == ["the lab defines no nodes: add a nodes or groups list"]
    assert problems("- a list\n") == ["expected a mapping with name, nodes and/or groups"]


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="lab file does not exist"):
        load_lab(tmp_path / "nope.yaml")


def test_bad_lab_leaves_the_inventory_untouched(tmp_path: Path) -> None:
    inventory = EmbeddedInventory(tmp_path / "inv.sqlite", "me")
    inventory.import_nodes(load_lab(FIXTURES / "labs" / "demo.yaml"))
    before = inventory.nodes()
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n- {name: new001, machine_type: smithi}\n- {name: new002}\n")
    with pytest.raises(LabError):
        inventory.import_nodes(load_lab(bad))
    assert inventory.nodes() == before


def test_reimport_upserts_and_keeps_locks(tmp_path: Path) -> None:
    inventory = EmbeddedInventory(tmp_path / "inv.sqlite", "me")
    first = parse_lab(
        "nodes:\n- {name: a1, machine_type: t, os_type: ubuntu}\n- {name: a2, machine_type: t}\n"
    )
    assert inventory.import_nodes(first.nodes).added == ("a1", "a2")
    inventory.lock(["a1"], "/archive/r/1")
    second = parse_lab(
        "nodes:\n- {name: a1, machine_type: t, os_type: centos}\n"
        "- {name: a2, machine_type: t}\n- {name: a3, machine_type: t}\n"
    )
    result = inventory.import_nodes(second.nodes)
    assert (result.added, result.updated, result.unchanged) == (("a3",), ("a1",), 1)
    a1 = inventory.nodes()[0]
    assert (a1.name, a1.os_type, a1.locked, a1.description) == (
        "a1",
        "centos",
        True,
        "/archive/r/1",
    )
