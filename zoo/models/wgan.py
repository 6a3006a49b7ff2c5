"""Wasserstein GAN networks (Arjovsky, Chintala & Bottou 2017, arXiv:1701.07875), 2D and 3D.

The WGAN reference code trains DCGAN-style networks (Radford et al. 2015); this module
builds them at any power-of-two image size >= 16, as that code's ``DCGAN_G``/``DCGAN_D``
do (its ``n_extra_layers`` option is not offered). No layer has a bias.

Generator (``model.generator``): z ``(z_dim,)`` -> reshaped to ``1x1xz_dim`` -> transposed
conv 4x4 (valid) to ``4x4 x filters*size/8`` -> BN -> ReLU -> transposed convs 4x4/2 that
halve the width and double the size (BN + ReLU each) until ``size/2`` -> transposed conv
4x4/2 to ``channels`` -> tanh. At 64x64x3: 4x4x512, 8x8x256, 16x16x128, 32x32x64, 64x64x3;
3,576,704 trainable parameters.

Critic (``model.critic``): image -> conv 4x4/2 to ``filters`` -> LeakyReLU(0.2) (no norm on
the first layer, as in DCGAN) -> convs 4x4/2 that double the width (norm + LeakyReLU each)
until 4x4 -> conv 4x4 (valid) to 1 -> reshaped to ``(batch, 1)``. No sigmoid: the output
is the critic's unbounded score. At 64x64x3: 2,765,568 trainable parameters. Unlike the
reference code, which returns the batch mean, the critic returns one score per sample
(needed for the per-sample gradient penalty of WGAN-GP).

``critic_norm="layer"`` (registry entry ``wgan_gp``, Gulrajani et al. 2017,
arXiv:1704.00028) replaces the critic's BatchNormalization by LayerNormalization over all
of a sample's features (H, W, C), because batch statistics mix samples and break the
per-sample gradient penalty. The statistics match the WGAN-GP reference code; Keras'
LayerNormalization learns one scale/offset per feature (H*W*C) rather than per channel,
like PyTorch's ``nn.LayerNorm([C, H, W])``.

The builder returns one :class:`WGAN` model. It is a functional ``keras.Model`` whose
input is the latent vector z and whose output is ``critic(generator(z))``, the critic's
scores of generated samples (``-mean(model(z))`` is the WGAN generator loss). The two
networks are nested functional models, available as ``model.generator`` (z -> images in
[-1, 1]) and ``model.critic`` (images -> scores). Being functional, WGAN saves and loads
as ``.keras``, ``.h5`` and SavedModel; ``keras.models.load_model`` needs ``zoo.models.wgan``
imported (``import zoo.models.wgan``; ``zoo.load`` does it) so the class is registered.

Layer names. Generator: ``stem_reshape``, ``stem_conv``, ``stem_bn``, ``stage0_out``
(4x4), then ``stage{i}_conv``, ``stage{i}_bn``, ``stage{i}_out`` (each doubling the size),
``head_conv``, ``head_tanh``. Critic: ``stem_conv``, ``stage0_out`` (size/2), then
``stage{i}_conv``, ``stage{i}_bn`` (or ``stage{i}_ln``), ``stage{i}_out`` down to 4x4,
``classifier`` (the 4x4 valid conv holding the score weights) and ``score`` (reshape to
``(batch, 1)``).
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import _wgan_sample as S
from zoo.models import _wgan_train as T
from zoo.models import register_builder
from zoo.models._wgan_sample import generate  # noqa: F401 - public: zoo.callbacks samples with it
from zoo.models._wgan_train import infer_variant, paper_optimizer  # noqa: F401 - public: zoo.train.gan
from zoo.models.layers import check_spatial_dims, conv, conv_transpose

L = keras.layers
MIN_SIZE = 16
CRITIC_NORMS = ("batch", "layer", None)


@keras.utils.register_keras_serializable(package="zoo")
class WGAN(keras.Model):
    """A functional model ``z -> critic(generator(z))`` exposing both networks, trainable with fit.

    ``model(z)`` returns the critic's scores ``(batch, 1)`` of the generated samples;
    ``model.generator(z)`` the samples (tanh, in [-1, 1]); ``model.critic(x)`` the scores
    of any images ``x``. Weights are shared: training ``model.generator`` trains ``model``.

    ``compile()`` (no arguments) sets the paper's training of the variant (WGAN: RMSprop 5e-5,
    clipping 0.01, 5 critic steps per generator step with the 100-step warm-up; WGAN-GP: Adam
    1e-4 (0, 0.9), lambda = 10, 5 critic steps), then ``fit(images)`` trains it: one batch of
    real images is one critic update (see ``zoo.models._wgan_train``). ``value_range`` is the
    range of the data's values: real images are mapped from it to [-1, 1] and ``sample()``
    maps generated images back (default (0, 1), the zoo's image convention; finetune sets it
    from the data source). It is part of the model's config, so saved models keep it.
    """

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        # Same signature as keras' Functional, so get_config/from_config and every save
        # format treat this class as a functional model (the graph is the config);
        # ``value_range`` travels in kwargs and in the config (see from_config).
        value_range = kwargs.pop("value_range", None)
        super().__init__(inputs=inputs, outputs=outputs, name=name, trainable=trainable, **kwargs)
        self.value_range = value_range

    @property
    def generator(self):
        """The generator, a functional keras.Model: z ``(batch, z_dim)`` -> images."""
        return self.get_layer("generator")

    @property
    def critic(self):
        """The critic, a functional keras.Model: images -> scores ``(batch, 1)``."""
        return self.get_layer("critic")

    @property
    def z_dim(self):
        """Length of the latent vector."""
        return int(self.input_shape[-1])

    @property
    def image_shape(self):
        """Shape of one generated image, e.g. ``(64, 64, 3)``."""
        return tuple(int(s) for s in self.generator.output_shape[1:])

    @property
    def value_range(self):
        """``(lo, hi)``: the data values that the generator's -1 and 1 stand for."""
        return self.__dict__["_zoo_value_range"]

    @value_range.setter
    def value_range(self, value):
        value = (0.0, 1.0) if value is None else value
        ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and value[1] > value[0]
        if not ok:
            raise InvalidArgumentError(
                f"WGAN: value_range={value!r} must be two numbers (lo, hi) with lo < hi: the data "
                "values that the generator's -1 and 1 stand for, e.g. (0, 1) for images read as "
                "[0, 1] or (-100, 400) for a CT window.")
        self.__dict__["_zoo_value_range"] = (float(value[0]), float(value[1]))  # untracked by Keras
        self.train_function = None  # traced with the old range

    def get_config(self):
        return {**super().get_config(), "value_range": list(self.value_range)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        value_range = config.pop("value_range", None)
        model = super().from_config(config, custom_objects)
        model.value_range = None if value_range is None else tuple(value_range)
        return model

    # ------------------------------------------------------------------ training
    def compile(self, variant=None, *, critic_optimizer=None, generator_optimizer=None,
                learning_rate=None, n_critic=None, warmup_critic=None, warmup_iterations=None,
                warmup_every=None, clip_value=None, gp_weight=None, seed=None, **kwargs):
        """Set up training; no arguments = the paper's settings of the variant.

        variant: "wgan" (weight clipping) or "wgan_gp" (gradient penalty); None = the entry the
            model was loaded as, else "wgan_gp" when the critic has LayerNormalization.
        critic_optimizer, generator_optimizer: Keras optimizers (default the paper's; see
            ``zoo.models._wgan_train.paper_optimizer``); ``learning_rate`` changes the defaults' rate.
        n_critic: critic updates per generator update (5); warmup_critic (100, WGAN only) of them
            while fewer than ``warmup_iterations`` (25) generator updates were made and at every
            ``warmup_every``-th (500) one; 0 turns the warm-up off.
        clip_value: weight clipping box (0.01 for WGAN, None for WGAN-GP).
        gp_weight: lambda of the gradient penalty (10 for WGAN-GP, 0 for WGAN).
        seed: of the z and interpolation noise (an int; default 0): training is reproducible.
        Other keywords (``run_eagerly``, ``steps_per_execution``) go to ``keras.Model.compile``.
        """
        if "loss" in kwargs or "metrics" in kwargs or "optimizer" in kwargs:
            raise InvalidArgumentError(
                "WGAN.compile: loss/metrics/optimizer are set by the variant (the critic's "
                "Wasserstein loss); pass critic_optimizer=/generator_optimizer= to change the optimizers.")
        settings = T.resolve_settings(self, variant, dict(
            n_critic=n_critic, warmup_critic=warmup_critic, warmup_iterations=warmup_iterations,
            warmup_every=warmup_every, clip_value=clip_value, gp_weight=gp_weight))
        for arg, opt in (("critic_optimizer", critic_optimizer), ("generator_optimizer", generator_optimizer)):
            if opt is not None and not isinstance(opt, keras.optimizers.Optimizer):
                raise InvalidArgumentError(f"WGAN.compile: {arg} must be a keras optimizer instance; "
                                           f"got {type(opt).__name__}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidArgumentError(f"WGAN.compile: seed={seed!r} must be an int.")
        c_opt = critic_optimizer or T.paper_optimizer(settings["variant"], learning_rate)
        g_opt = generator_optimizer or T.paper_optimizer(settings["variant"], learning_rate)
        if c_opt is g_opt:
            raise InvalidArgumentError("WGAN.compile: the critic and the generator need two optimizer "
                                       "objects (each keeps its own state); pass two instances.")
        super().compile(optimizer=c_opt, **kwargs)
        self.generator_optimizer = g_opt
        c_opt.build(self.critic.trainable_variables)
        g_opt.build(self.generator.trainable_variables)
        names = ["loss", "wasserstein"] + (["gp"] if settings["gp_weight"] else []) + ["g_loss"]
        # untracked by Keras: the loss means are not model weights (get_weights/set_weights stay
        # those of the networks, equal for a compiled copy and the original)
        self.__dict__["_zoo_trackers"] = {n: keras.metrics.Mean(name=n) for n in names}
        self.__dict__["_zoo_train"] = settings
        self.__dict__["_zoo_seed"] = 0 if seed is None else int(seed)

    @property
    def train_settings(self):
        """The compiled schedule and penalties (a dict), or a ZooError before ``compile``."""
        if "_zoo_train" not in self.__dict__:
            raise InvalidArgumentError("WGAN: call gan.compile() (the paper's settings) before fit.")
        return self.__dict__["_zoo_train"]

    def _assert_compile_was_called(self):
        self.train_settings  # noqa: B018 - the ZooError naming gan.compile()

    @property
    def train_seed(self):
        return self.__dict__.get("_zoo_seed", 0)

    @property
    def trackers(self):
        """The running means ``fit`` logs (``loss``, ``wasserstein``, ``gp``, ``g_loss``)."""
        return self.__dict__.get("_zoo_trackers", {})

    @property
    def metrics(self):
        return list(self.trackers.values())

    def optimizer_variables(self):
        """The critic's then the generator's optimizer variables (the resume point keeps both)."""
        return list(self.optimizer.variables) + list(self.generator_optimizer.variables)

    def train_step(self, data):
        return T.train_step(self, data)

    def test_step(self, data):
        return T.test_step(self, data)

    def make_train_function(self, force=False):
        if self.train_function is None or force:
            self.train_settings  # noqa: B018 - a clear error before compile
            self.train_function = T.make_train_function(self)
        return self.train_function

    # ------------------------------------------------------------------ sampling
    def latent(self, n, seed=0):
        """``n`` latent vectors ``(n, z_dim)`` ~ N(0, 1), the same for the same ``seed`` anywhere."""
        return S.latent(self, n, seed)

    def sample(self, n, seed=0, batch_size=64):
        """``n`` generated images as a NumPy array in ``value_range`` (deterministic by ``seed``)."""
        return S.sample(self, n, seed, batch_size)

    def interpolate(self, start=0, end=1, steps=8, spherical=True):
        """Images along a latent path from ``start`` to ``end`` (seeds or z vectors), ``steps``
        of them, in ``value_range``; ``spherical`` (slerp, White 2016) keeps the path at the norm
        a Gaussian latent has, a straight line (lerp) passes through atypically short z."""
        return S.interpolate(self, start, end, steps, spherical)


# tf_keras' HDF5 writer records a top-level model's bare class name ("WGAN"), not its
# registered name ("zoo>WGAN") as the .keras format does, so load_model("m.h5") looks the
# bare name up: register it as an alias too (without replacing a user's own "WGAN").
keras.utils.get_custom_objects().setdefault(WGAN.__name__, WGAN)


def valid_sizes(size):
    """The power-of-two sizes >= 16 nearest to ``size`` (one or two of them)."""
    lower = MIN_SIZE
    while lower * 2 <= size:
        lower *= 2
    if size <= MIN_SIZE:
        return [MIN_SIZE]
    return [lower] if lower == size else [lower, lower * 2]


def _check_size(size, arg, where):
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= 4096 or size & (size - 1):
        if isinstance(size, bool) or not isinstance(size, (int, float)):
            near = [64]
        else:
            near = valid_sizes(size)
        raise InvalidArgumentError(
            f"{where}: {arg}={size!r} is not supported; the DCGAN-style networks need a square "
            f"image whose side is a power of two >= {MIN_SIZE} (16, 32, 64, 128, 256, ...), as each "
            f"stage halves or doubles it down to 4. Nearest valid: "
            f"{' or '.join(str(s) for s in near)}; pass image_size={near[0]} "
            "(and resize, crop or pad your images to match).")
    return size


def _resolve_image(image_size, channels, in_channels, input_shape, spatial_dims, where):
    """(size, channels) from image_size/channels/in_channels/input_shape, checked to agree."""
    if channels is not None and in_channels is not None and channels != in_channels:
        raise InvalidArgumentError(
            f"{where}: channels={channels!r} and in_channels={in_channels!r} disagree; they name "
            "the same thing (image channels) - pass only one of them.")
    channels = channels if channels is not None else in_channels
    if input_shape is not None:
        shape = tuple(input_shape)
        if len(shape) not in (spatial_dims, spatial_dims + 1):
            raise InvalidArgumentError(
                f"{where}: input_shape={shape!r} must be the image shape with {spatial_dims} "
                f"spatial axes (+ channels), e.g. {(64,) * spatial_dims + (3,)}; the latent "
                "length is z_dim.")
        spatial = shape[:spatial_dims]
        if any(s is None for s in spatial) or len(set(spatial)) != 1:
            raise InvalidArgumentError(
                f"{where}: input_shape={shape!r} must be a fixed, square (cubic) image size, "
                f"e.g. {(64,) * spatial_dims + (3,)}; a GAN generates one fixed size.")
        if image_size is not None and image_size != spatial[0]:
            raise InvalidArgumentError(
                f"{where}: image_size={image_size!r} and input_shape={shape!r} disagree; "
                "pass only one of them.")
        image_size = _check_size(spatial[0], "input_shape size", where)
        if len(shape) == spatial_dims + 1 and shape[-1] is not None:
            if channels is not None and channels != shape[-1]:
                raise InvalidArgumentError(
                    f"{where}: input_shape={shape!r} ends with {shape[-1]} channels but "
                    f"channels={channels}; make them agree (pass channels={shape[-1]}).")
            channels = shape[-1]
    image_size = 64 if image_size is None else _check_size(image_size, "image_size", where)
    channels = 3 if channels is None else channels
    check_positive_int("channels", channels, where, maximum=4096)
    return image_size, channels


def _bn(name):
    # PyTorch defaults (momentum 0.1 = Keras 0.9, eps 1e-5); DCGAN init gamma ~ N(1, 0.02).
    return L.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name,
                                gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02))


def _init():
    return keras.initializers.RandomNormal(0.0, 0.02)  # DCGAN init; new object per layer


def build_generator(*, image_size, channels, z_dim, filters, batch_norm, spatial_dims,
                    name="generator"):
    """The DCGAN generator: z ``(z_dim,)`` -> images ``(size,)*dims + (channels,)`` in [-1, 1]."""
    ConvT = conv_transpose(spatial_dims)
    width = filters * image_size // 8  # 512 at 64 px, doubled per extra stage
    z = keras.Input(shape=(z_dim,), name="z")
    x = L.Reshape((1,) * spatial_dims + (z_dim,), name="stem_reshape")(z)
    x = ConvT(width, 4, strides=1, padding="valid", use_bias=False, kernel_initializer=_init(),
              name="stem_conv")(x)
    if batch_norm:
        x = _bn("stem_bn")(x)
    x = L.ReLU(name="stage0_out")(x)
    size, stage = 4, 1
    while size < image_size // 2:
        width //= 2
        x = ConvT(width, 4, strides=2, padding="same", use_bias=False, kernel_initializer=_init(),
                  name=f"stage{stage}_conv")(x)
        if batch_norm:
            x = _bn(f"stage{stage}_bn")(x)
        x = L.ReLU(name=f"stage{stage}_out")(x)
        size, stage = size * 2, stage + 1
    x = ConvT(channels, 4, strides=2, padding="same", use_bias=False, kernel_initializer=_init(),
              name="head_conv")(x)
    x = L.Activation("tanh", name="head_tanh")(x)
    return keras.Model(z, x, name=name)


def build_critic(*, image_size, channels, filters, norm, spatial_dims, name="critic"):
    """The DCGAN critic: images -> unbounded scores ``(batch, 1)``; norm 'batch'/'layer'/None."""
    Conv = conv(spatial_dims)
    image = keras.Input(shape=(image_size,) * spatial_dims + (channels,), name="image")
    x = Conv(filters, 4, strides=2, padding="same", use_bias=False, kernel_initializer=_init(),
             name="stem_conv")(image)
    x = L.LeakyReLU(alpha=0.2, name="stage0_out")(x)
    size, width, stage = image_size // 2, filters, 1
    while size > 4:
        width *= 2
        x = Conv(width, 4, strides=2, padding="same", use_bias=False, kernel_initializer=_init(),
                 name=f"stage{stage}_conv")(x)
        if norm == "batch":
            x = _bn(f"stage{stage}_bn")(x)
        elif norm == "layer":  # over all of a sample's features, as WGAN-GP's reference code
            x = L.LayerNormalization(axis=list(range(1, spatial_dims + 2)), epsilon=1e-5,
                                     name=f"stage{stage}_ln")(x)
        x = L.LeakyReLU(alpha=0.2, name=f"stage{stage}_out")(x)
        size, stage = size // 2, stage + 1
    x = Conv(1, 4, strides=1, padding="valid", use_bias=False, kernel_initializer=_init(),
             name="classifier")(x)
    x = L.Reshape((1,), name="score")(x)
    return keras.Model(image, x, name=name)


@register_builder
def wgan(*, image_size=None, channels=None, z_dim=100, filters=64, batch_norm=True,
         critic_norm="batch", spatial_dims=2, in_channels=None, input_shape=None, value_range=None,
         name="wgan"):
    """WGAN generator + critic as one :class:`WGAN` model (``z -> critic(generator(z))``).

    image_size: side of the square (cubic) images, a power of two >= 16; default 64.
    channels: image channels (generator output = critic input); default 3.
        ``in_channels`` is accepted as the zoo-wide name of the same thing.
    z_dim: length of the latent vector (100 in the paper).
    filters: ``ngf = ndf``, the width of the generator's last and the critic's first
        layer (64); each stage doubles it towards the 4x4 end.
    batch_norm: False removes every BatchNormalization layer (generator, and the critic
        when ``critic_norm="batch"``) - the paper's "no BN" ablation.
    critic_norm: ``"batch"`` (WGAN), ``"layer"`` (WGAN-GP: LayerNormalization, which keeps
        the gradient penalty per sample) or None (no normalisation in the critic).
    spatial_dims: 2 (images) or 3 (volumes, cubic kernels).
    input_shape: the image shape ``(size, size[, size], channels)`` - an alternative to
        image_size/channels used by the generic registry tools. The model's own
        ``input_shape`` attribute is the latent shape ``(None, z_dim)``.
    value_range: the data values the generator's [-1, 1] stands for (default (0, 1)).
    """
    where = "wgan"
    check_spatial_dims(spatial_dims, (2, 3), where)
    image_size, channels = _resolve_image(image_size, channels, in_channels, input_shape,
                                          spatial_dims, where)
    check_positive_int("z_dim", z_dim, where, maximum=16384)
    check_positive_int("filters", filters, where, maximum=4096)
    if not isinstance(batch_norm, bool):
        raise InvalidArgumentError(f"{where}: batch_norm={batch_norm!r} must be True or False.")
    check_choice("critic_norm", critic_norm, CRITIC_NORMS, where)
    if critic_norm == "batch" and not batch_norm:
        critic_norm = None
    generator = build_generator(image_size=image_size, channels=channels, z_dim=z_dim,
                                filters=filters, batch_norm=batch_norm, spatial_dims=spatial_dims)
    critic = build_critic(image_size=image_size, channels=channels, filters=filters,
                          norm=critic_norm, spatial_dims=spatial_dims)
    z = keras.Input(shape=(z_dim,), name="z")
    return WGAN(inputs=z, outputs=critic(generator(z)), name=name, value_range=value_range)
