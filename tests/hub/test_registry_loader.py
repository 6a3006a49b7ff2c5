"""registry.py: parsing, validation, user registries, name resolution."""
import dataclasses
import textwrap

import pytest

import zoo
from zoo.errors import RegistryError, UnknownModelError
from zoo.hub.registry import default_path, get_registry, load_registry

ENTRY = """
models:
  {name}:
    builder: {builder}
    task: classification
    spatial_dims: [2]
    params: 10
"""


def write(tmp_path, text, name="reg.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_builtin_registry_loads_and_is_frozen():
    reg = get_registry()
    assert reg.names() == sorted(reg.names())
    for entry in reg.models.values():
        with pytest.raises(dataclasses.FrozenInstanceError):
            entry.params = 1
        with pytest.raises(TypeError):
            entry.config["x"] = 1  # read-only mapping
        module, func = entry.builder.split(":")
        assert module.startswith("zoo.models."), entry.name
        assert callable(entry.resolve_builder())


def test_duplicate_keys_rejected(tmp_path):
    path = write(tmp_path, """
        models:
          a:
            builder: zoo.models.x:y
            task: classification
            task: segmentation
            spatial_dims: [2]
            params: 1
        """)
    with pytest.raises(RegistryError, match=r"duplicate key 'task'.*line 6.*first at line 5"):
        load_registry([path])


def test_duplicate_entry_names_rejected(tmp_path):
    path = write(tmp_path, ENTRY.format(name="a", builder="zoo.models.x:y") + """
  a:
    builder: zoo.models.x:y
    task: classification
    spatial_dims: [2]
    params: 10
""")
    with pytest.raises(RegistryError, match="duplicate key 'a'"):
        load_registry([path])


def test_unknown_key_names_entry_and_allowed_keys(tmp_path):
    path = write(tmp_path, ENTRY.format(name="mynet", builder="zoo.models.x:y") + "    paramz: 3\n")
    with pytest.raises(RegistryError) as info:
        load_registry([path])
    msg = str(info.value)
    assert "'mynet'" in msg and "'paramz'" in msg and "allowed keys" in msg and "params" in msg
    assert "Did you mean 'params'" in msg


@pytest.mark.parametrize("builder", ["os:system", "zoo_evil.models:f", "zoox:f", "builtins:eval",
                                     "zoo.models.x:__import__('os')", "zoo.models.x"])
def test_builder_must_live_inside_zoo(tmp_path, builder):
    path = write(tmp_path, ENTRY.format(name="a", builder=repr(builder)))
    with pytest.raises(RegistryError, match="builder"):
        load_registry([path])


def test_unsafe_yaml_tags_rejected(tmp_path):
    path = write(tmp_path, "models: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry([path])


def test_missing_required_key(tmp_path, monkeypatch):
    path = write(tmp_path, """
        models:
          a: {builder: "zoo.models.resnet:resnet", spatial_dims: [2]}
        """)
    with pytest.raises(RegistryError, match="entry 'a': missing required key 'task'"):
        load_registry([path])
    own = write(tmp_path, """
        models:
          a: {builder: "zoo.models.resnet:resnet", task: classification, spatial_dims: [2]}
        """, "own.yaml")
    import zoo.hub.registry as registry
    monkeypatch.setattr(registry, "default_path", lambda: own)  # the zoo's own file: params required
    with pytest.raises(RegistryError, match="entry 'a': missing required key 'params'"):
        load_registry([own])


def test_issue10_12_params_optional_in_a_user_registry_checked_when_given(tmp_path, monkeypatch):
    """A user's entry may leave params out (it is listed with '-' and builds); given, it is checked."""
    from _proc import run_zoo
    user = write(tmp_path, """
        models:
          my_unet:
            builder: zoo.models.unet:unet
            task: segmentation
            spatial_dims: [2]
            config: {filters: 4}
        """, "user.yaml")
    entry = load_registry([default_path(), user]).models["my_unet"]
    assert entry.params is None and entry.origin == str(user)
    run = run_zoo("list", "my_*", env={"ZOO_REGISTRY": user}, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].split() == ["my_unet", "segmentation", "2", "-", "-"]
    monkeypatch.setenv("ZOO_REGISTRY", str(user))
    model = zoo.load("my_unet", input_shape=(32, 32, 1))
    assert model.output_shape == (None, 32, 32, 2)
    bad = write(tmp_path, (tmp_path / "user.yaml").read_text() + "    params: -3\n", "bad.yaml")
    with pytest.raises(RegistryError, match="entry 'my_unet': params .* is -3; expected"):
        load_registry([default_path(), bad])


@pytest.mark.parametrize("hash_", ["sha1:abc", "sha256:xyz", "md5:" + "0" * 31, "deadbeef"])
def test_weight_hash_format(tmp_path, hash_):
    path = write(tmp_path, ENTRY.format(name="a", builder="zoo.models.x:y")
                 + f"    weights:\n      w: {{url: 'https://example.org/w.h5', hash: '{hash_}'}}\n")
    with pytest.raises(RegistryError, match="hash"):
        load_registry([path])


def test_user_registry_adds_entries_and_clash_is_error(tmp_path, monkeypatch):
    builtin = default_path()
    name = get_registry().names()[0] if get_registry().names() else None
    extra = write(tmp_path, ENTRY.format(name="my_private_net", builder="zoo.models.resnet:resnet"),
                  "extra.yaml")
    other = write(tmp_path, ENTRY.format(name="second_net", builder="zoo.models.resnet:resnet"),
                  "other.yaml")
    monkeypatch.setenv("ZOO_REGISTRY", f"{extra}:{other}")
    reg = get_registry()
    assert {"my_private_net", "second_net"} <= set(reg.names())
    assert "my_private_net" in zoo.list_models()
    assert reg.get("my_private_net").origin == str(extra)
    if name:
        clash = write(tmp_path, ENTRY.format(name=name, builder="zoo.models.resnet:resnet"), "clash.yaml")
        with pytest.raises(RegistryError, match=f"model '{name}' is already defined in {builtin}"):
            load_registry([builtin, clash])
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "missing.yaml"))
    with pytest.raises(RegistryError, match="missing.yaml.*cannot be read.*ZOO_REGISTRY"):
        get_registry()


def test_user_weights_section_adds_tags(tmp_path):
    base = write(tmp_path, ENTRY.format(name="a", builder="zoo.models.x:y"), "base.yaml")
    user = write(tmp_path, """
        weights:
          a:
            mine: {url: "file:///tmp/w.weights.h5", hash: "sha256:%s", num_classes: 2}
        """ % ("ab" * 32), "user.yaml")
    reg = load_registry([base, user])
    spec = reg.get("a").weights["mine"]
    assert spec.num_classes == 2 and spec.hash_algorithm == "sha256" and spec.origin == str(user)
    again = write(tmp_path, open(user).read(), "again.yaml")
    with pytest.raises(RegistryError, match="weights 'mine' of 'a' already defined"):
        load_registry([base, user, again])
    ghost = write(tmp_path, "weights:\n  nosuch: {}\n", "ghost.yaml")
    with pytest.raises(RegistryError, match="unknown model 'nosuch'"):
        load_registry([base, ghost])


def test_unknown_name_suggests_closest(tmp_path):
    path = write(tmp_path, ENTRY.format(name="resnet50", builder="zoo.models.x:y")
                 + ENTRY.format(name="resnet18", builder="zoo.models.x:y").replace("models:\n", ""))
    reg = load_registry([path])
    with pytest.raises(UnknownModelError, match="no model named 'resnet05'.*Did you mean 'resnet50'"):
        reg.get("resnet05")
    assert reg.get("ResNet50").name == "resnet50"  # case-insensitive fallback
    assert isinstance(UnknownModelError("x"), KeyError)


def test_notes_may_be_a_list_shared_through_yaml_anchors(tmp_path):
    """A family writes its common text once (&anchor) and each entry adds its own deviation."""
    path = write(tmp_path, """
        models:
          a:
            builder: zoo.models.x:y
            task: classification
            spatial_dims: [2]
            params: 1
            notes: [Entry a only., &family Shared family text.]
          b:
            builder: zoo.models.x:y
            task: classification
            spatial_dims: [2]
            params: 1
            notes: [Entry b only., *family]
        """)
    reg = load_registry([path])
    assert reg.get("a").notes == "Entry a only. Shared family text."
    assert reg.get("b").as_dict()["notes"] == "Entry b only. Shared family text."


def test_shipped_notes_speak_to_users_not_about_the_test_suite():
    for entry in get_registry().models.values():
        text = (entry.notes or "").lower()
        assert not any(word in text for word in ("sweep", "test_", "tests/")), entry.name
    vgg16 = zoo.info("vgg16")["notes"]  # the family text reaches every VGG entry
    assert vgg16.startswith("Configuration D without batch norm") and "block5_pool" in vgg16
