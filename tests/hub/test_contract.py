"""The layer-name contract: one resolver (zoo.contract), family specs in the registry, selectors."""
import textwrap

import pytest

import zoo
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, RegistryError
from zoo.hub.registry import default_path, load_registry


@pytest.fixture(autouse=True)
def _clear():
    yield
    keras.backend.clear_session()


def tiny_unet():
    return zoo.load("unet", filters=4, depth=2, dropout=0.0, input_shape=(32, 32, 1))


def test_selectors_roles_names_and_globs():
    model = tiny_unet()
    parts = zoo.contract(model)
    assert parts.layers(["first_conv", "classifier"], model) == ["stem_conv", "classifier"]
    assert parts.layers("stage1_*", model) == [n.name for n in model.layers if n.name.startswith("stage1_")]
    assert parts.layers(["encoder"], model) == list(parts.encoder)
    # a role twice, or a name that a glob also matches, is listed once
    assert parts.layers(["classifier", "classif*", "classifier"], model) == ["classifier"]
    with pytest.raises(InvalidArgumentError, match="neither a contract role.*first_conv"):
        parts.layers(["frist_conv"], model)
    with pytest.raises(InvalidArgumentError, match="matches no layer"):
        parts.layers(["decoder_*"], model)
    with pytest.raises(InvalidArgumentError, match="'aux'.*names no layer"):
        parts.layers(["aux"], model)


def test_encoder_is_what_the_deepest_stage_depends_on():
    model = zoo.load("deeplabv3_resnet50", num_classes=3, width=4, filters=8, input_shape=(32, 32, 3))
    parts = zoo.contract(model)
    assert parts.first_conv == "stem_conv" and parts.classifiers == ("classifier",)
    assert {"aux_conv", "aux_classifier"} <= set(parts.aux)
    # the backbone only: no ASPP, no head, no auxiliary branch
    assert parts.encoder and all(n.startswith(("stem_", "stage")) for n in parts.encoder)
    assert not any(n.startswith(("aspp", "head", "aux")) for n in parts.encoder)


def test_info_shows_the_full_contract_spec():
    assert zoo.info("resnet50")["contract"] == {
        "first_conv": "conv1_conv", "classifier": ["predictions"], "stage_outputs": [r"conv(\d)_block\d+_out"],
        "aux": r"aux\d*(_.*)?"}
    assert zoo.info("unet")["contract"]["first_conv"] == "stem_conv"  # the zoo convention by default


ENTRY = """
contracts:
  {cname}: {spec}
models:
  mynet:
    builder: zoo.models.unet:unet
    task: segmentation
    spatial_dims: [2]
    params: 10
    contract: {ref}
"""


def _load(tmp_path, cname="mine", spec="{first_conv: stage1_conv1, stage_outputs: ['stage(\\d+)_out']}",
          ref="mine"):
    path = tmp_path / "user.yaml"
    path.write_text(textwrap.dedent(ENTRY.format(cname=cname, spec=spec, ref=ref)))
    return load_registry([default_path(), path])


def test_user_registry_contract_spec_and_overrides(tmp_path):
    reg = _load(tmp_path)
    assert dict(reg.get("mynet").contract) == {"base": "mine"}
    reg = _load(tmp_path, ref="{base: mine, aux: 'side_.*'}")
    assert reg.get("mynet").contract["aux"] == "side_.*"


@pytest.mark.parametrize("spec,ref,message", [
    ("{first_conv: x, stage_outputs: ['stage(']}", "mine", "not a valid regular expression"),
    ("{first_conv: x, stages: []}", "mine", "unknown key.*'stages'.*Did you mean 'stage_outputs'"),
    ("{first_conv: x}", "theirs", "contract 'theirs' is not defined.*mine"),
    ("{first_conv: [x]}", "mine", "first_conv must be a layer name"),
    ("{classifier: head}", "mine", "classifier must be a list of strings"),
    ("{base: keras_vg}", "mine", "base 'keras_vg' is not defined"),
])
def test_bad_contract_specs_are_registry_errors(tmp_path, spec, ref, message):
    with pytest.raises(RegistryError, match=message):
        _load(tmp_path, spec=spec, ref=ref)


def test_redefining_a_builtin_contract_is_refused(tmp_path):
    with pytest.raises(RegistryError, match="contract 'keras_vgg' is already defined"):
        _load(tmp_path, cname="keras_vgg", ref="keras_vgg")
