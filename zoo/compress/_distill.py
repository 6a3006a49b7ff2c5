"""Knowledge distillation (Hinton et al. 2015): a smaller student learns from a frozen teacher.

The student trains inside one functional model ``input -> [student, teacher] -> DistillationHead``
so that ``zoo.finetune`` runs it unchanged (data, strategies, checkpoints, resume): the head
returns the student's logits (the task loss and metrics see them) and adds
``alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))`` (per pixel for segmentation)
to the model's losses; the task loss is weighted by ``1 - alpha``. At the end the student is
taken out as a model of its own.
"""
from zoo._keras import keras, tf
from zoo.compress._quantize import copy_model
from zoo.errors import InvalidArgumentError
from zoo.hub import load
from zoo.hub.registry import get_registry, thaw
from zoo.losses import get_loss
from zoo.record import attach, attached, info_of


@keras.utils.register_keras_serializable(package="zoo")
class DistillationHead(keras.layers.Layer):
    """``[student logits, teacher logits] -> student logits``, adding the distillation loss."""

    def __init__(self, temperature=4.0, alpha=0.5, **kwargs):
        super().__init__(**kwargs)
        self.temperature, self.alpha = float(temperature), float(alpha)

    def call(self, inputs):
        student, teacher = inputs
        t = self.temperature
        log_s = tf.nn.log_softmax(tf.cast(student, tf.float32) / t, axis=-1)
        p_t = tf.nn.softmax(tf.stop_gradient(tf.cast(teacher, tf.float32)) / t, axis=-1)
        kl = tf.reduce_sum(p_t * (tf.math.log(p_t + 1e-12) - log_s), axis=-1)
        self.add_loss(self.alpha * t * t * tf.reduce_mean(kl))
        return student

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "alpha": self.alpha}


class ScaledLoss(keras.losses.Loss):
    """``weight * loss`` (the task part of the distillation objective)."""

    def __init__(self, loss, weight):
        super().__init__(name=f"{getattr(loss, 'name', 'loss')}_x{weight:g}")
        self.loss, self.weight = loss, float(weight)

    def call(self, y_true, y_pred):
        return self.weight * self.loss.call(y_true, y_pred)


def build_student(teacher, step, student=None, entry=None, sweep=False):
    """The student: ``student`` (a model, copied, or a registry name) or the recipe's ``student``,
    built for the teacher's input shape, channels, classes and spatial dims (``sweep``: with the
    student entry's small sweep config, for checks at the sweep size)."""
    spec = student if student is not None else step.get("student")
    if spec is None:
        raise InvalidArgumentError(
            "distill needs a student: zoo.compress(teacher, 'distill', student='resnet18') (a registry name, "
            "built with the teacher's classes and input) or student=<keras.Model>; or a recipe with student:.")
    out_shape = tuple(teacher.outputs[0].shape[1:])
    if isinstance(spec, keras.Model):
        model = copy_model(spec)  # keeps its record (zoo.record)
    elif isinstance(spec, str):
        student_entry = get_registry().get(spec)
        teacher_task = info_of(teacher).task
        if student_entry.task != teacher_task:
            raise InvalidArgumentError(f"distill: student {spec!r} is a {student_entry.task} model but the teacher "
                                       f"is a {teacher_task} model; pick a student of the same task.")
        small = dict(thaw(student_entry.sweep.get("config", {}))) if sweep else {}
        small.pop("num_classes", None)
        kwargs = {"num_classes": out_shape[-1], "in_channels": teacher.input_shape[-1],
                  "spatial_dims": len(teacher.input_shape) - 2, "input_shape": tuple(teacher.input_shape[1:]),
                  **small, **dict(step.get("student_config") or {})}
        model = load(spec, **kwargs)
    else:
        raise InvalidArgumentError(f"distill: student must be a registry name or a keras.Model; got "
                                   f"{type(spec).__name__}.")
    if len(model.outputs) != 1:
        raise InvalidArgumentError(f"distill: the student {model.name!r} has {len(model.outputs)} outputs; build it "
                                   "without auxiliary heads (e.g. aux_head=False).")
    got = tuple(model.outputs[0].shape[1:])
    if len(got) != len(out_shape) or got[-1] != out_shape[-1] or any(
            a is not None and b is not None and a != b for a, b in zip(got, out_shape)):
        raise InvalidArgumentError(f"distill: the student {model.name!r} outputs {got} but the teacher "
                                   f"{teacher.name!r} outputs {out_shape}; they must match (same classes and size).")
    return model


def wrap(teacher, student, *, temperature, alpha):
    """The training model ``input -> DistillationHead([student(x), teacher(x)])``."""
    teacher.trainable = False
    original = student.name
    teacher._name, student._name = "teacher", "student"  # nested model names must differ
    inputs = keras.Input(shape=teacher.input_shape[1:], name="input")
    t_out = teacher(inputs, training=False)
    t_out = t_out[0] if isinstance(t_out, (list, tuple)) else t_out
    out = DistillationHead(temperature, alpha, name="distill")([student(inputs), t_out])
    model = keras.Model(inputs, out, name=f"distill_{student.name}")
    object.__setattr__(model, "zoo_student_name", original)  # untracked: unwrap renames the student
    known = attached(student)
    if known is not None:
        attach(model, known)
    return model


def task_loss(loss, task, alpha):
    return ScaledLoss(get_loss(loss or ("dice_ce" if task == "segmentation" else "ce")), 1.0 - alpha)


def unwrap(model):
    """The trained student of a distillation model, as a model of its own."""
    student = next(layer for layer in model.layers if isinstance(layer, keras.Model) and layer.trainable)
    out = copy_model(student)
    out._name = getattr(model, "zoo_student_name", None) or out.name
    return out


CUSTOM_OBJECTS = {"zoo>DistillationHead": DistillationHead}
