"""How a :class:`zoo.models.wgan.WGAN` trains: the papers' settings, the critic schedule, the
critic and generator steps and the gradient penalty. The model's ``compile``/``train_step``/
``make_train_function`` delegate here, so ``gan.fit`` runs these steps under any strategy.

One Keras step (one batch of real images) is one critic update, as in both reference codes,
where every critic iteration draws a new real batch. After the critic update the generator
is updated when the schedule says so:

* WGAN (Arjovsky et al. 2017, reference ``main.py``): generator iteration ``g`` comes after
  ``D(g)`` critic updates, ``D(g) = 100`` while ``g < 25`` or when ``g % 500 == 0``, else
  ``n_critic = 5``. RMSprop, learning rate 5e-5 for both networks (PyTorch's RMSprop:
  ``rho = alpha = 0.99``, ``eps = 1e-8``). After every critic update every trainable critic
  weight (kernels and BatchNorm's gamma/beta, as ``netD.parameters()`` there) is clipped to
  ``[-c, c]``, ``c = 0.01``. (The reference clamps *before* each critic update; clamping after
  it keeps the critic inside the box whenever anything reads it, generator updates included.)
* WGAN-GP (Gulrajani et al. 2017): 5 critic updates per generator update from the start,
  critic loss ``mean D(fake) - mean D(real) + lambda * mean((||grad D(x_hat)||_2 - 1)^2)``
  with ``x_hat = eps * real + (1 - eps) * fake``, ``eps ~ U[0, 1]`` per sample, ``lambda = 10``;
  Adam 1e-4, ``beta_1 = 0``, ``beta_2 = 0.9`` (``eps = 1e-8`` as TensorFlow 1's Adam there).

The counters are the optimizers' own ``iterations`` (critic updates and generator updates), so
they live in the optimizer state that checkpoints and resume points keep. Noise (z, eps) is
drawn statelessly from ``(seed, step)`` for the whole global batch and sliced per replica:
two replicas draw exactly the numbers one device would.

Under a ``tf.distribute`` strategy a synchronising update (an optimizer step) cannot sit
inside a ``tf.cond`` in a replica's function, so the train function runs the critic step in
``strategy.run`` and decides on the generator step in cross-replica context, where the
counters are the same for every replica.
"""
from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError, check_choice

VARIANTS = ("wgan", "wgan_gp")
# the papers' settings: (critic optimizer, generator optimizer) factories, schedule, penalties
DEFAULTS = {
    "wgan": dict(n_critic=5, warmup_critic=100, warmup_iterations=25, warmup_every=500,
                 clip_value=0.01, gp_weight=0.0),
    "wgan_gp": dict(n_critic=5, warmup_critic=5, warmup_iterations=0, warmup_every=0,
                    clip_value=None, gp_weight=10.0),
}


def paper_optimizer(variant, learning_rate=None):
    """A fresh optimizer with the paper's settings (``learning_rate`` overrides the rate)."""
    if variant == "wgan":
        return keras.optimizers.RMSprop(5e-5 if learning_rate is None else learning_rate,
                                        rho=0.99, epsilon=1e-8)
    return keras.optimizers.Adam(1e-4 if learning_rate is None else learning_rate,
                                 beta_1=0.0, beta_2=0.9, epsilon=1e-8)


def infer_variant(model):
    """'wgan_gp' for the registry entry wgan_gp or a critic with LayerNormalization, else 'wgan'."""
    info = getattr(model, "zoo_info", None)  # the record zoo.load attaches (zoo.record)
    if getattr(info, "name", None) in VARIANTS:
        return info.name
    has_ln = any(isinstance(layer, keras.layers.LayerNormalization) for layer in model.critic.layers)
    return "wgan_gp" if has_ln else "wgan"


def _count(value, arg, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"WGAN.compile: {arg}={value!r} must be an integer >= {minimum}.")
    return value


def resolve_settings(model, variant, overrides):
    """The training settings: the variant's paper defaults, then the caller's overrides."""
    variant = infer_variant(model) if variant is None else variant
    check_choice("variant", variant, VARIANTS, "WGAN.compile")
    settings = dict(DEFAULTS[variant])
    for key, value in overrides.items():
        if value is not None:
            settings[key] = value
    for key in ("n_critic", "warmup_critic"):
        _count(settings[key], key, 1)
    for key in ("warmup_iterations", "warmup_every"):
        _count(settings[key], key, 0)
    clip = settings["clip_value"]
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
        raise InvalidArgumentError(f"WGAN.compile: clip_value={clip!r} must be a number > 0 (the box "
                                   "[-c, c] for every critic weight; 0.01 in the paper) or None.")
    gp = settings["gp_weight"]
    if isinstance(gp, bool) or not isinstance(gp, (int, float)) or not gp >= 0:
        raise InvalidArgumentError(f"WGAN.compile: gp_weight={gp!r} must be a number >= 0 (lambda of "
                                   "the gradient penalty; 10 in the paper, 0 turns it off).")
    settings["variant"] = variant
    return settings


# --------------------------------------------------------------------------- the schedule
def critic_steps_for(g, s):
    """``D(g)``: critic updates before generator update ``g`` (tensor or int ``g``)."""
    warm = g < s["warmup_iterations"]
    if s["warmup_every"]:
        warm = warm | (g % s["warmup_every"] == 0)
    if isinstance(warm, bool):
        return s["warmup_critic"] if warm else s["n_critic"]
    return tf.where(warm, tf.constant(s["warmup_critic"], g.dtype), tf.constant(s["n_critic"], g.dtype))


def _ceil_div(a, b):
    return -((-a) // b)


def critic_steps_before(g, s):
    """Critic updates the schedule runs before generator update ``g``: ``sum(D(k), k < g)``."""
    warm_iters, every = s["warmup_iterations"], s["warmup_every"]
    if isinstance(g, int):
        special = min(g, warm_iters)
        if every and g > warm_iters:
            special += _ceil_div(g, every) - _ceil_div(warm_iters, every)
    else:
        special = tf.minimum(g, warm_iters)
        if every:
            special += tf.maximum(_ceil_div(g, every) - _ceil_div(tf.constant(warm_iters, g.dtype), every),
                                  tf.zeros_like(g))
    return s["n_critic"] * g + (s["warmup_critic"] - s["n_critic"]) * special


def generator_due(critic_done, g, s):
    """Whether generator update ``g`` is due after ``critic_done`` critic updates in total."""
    return critic_done >= critic_steps_before(g, s) + critic_steps_for(g, s)


# --------------------------------------------------------------------------- the steps
def to_unit(x, value_range):
    """Data values in ``value_range`` -> the generator's [-1, 1] (clipped)."""
    lo, hi = value_range
    x = tf.cast(x, tf.float32)
    return tf.clip_by_value((x - lo) * (2.0 / (hi - lo)) - 1.0, -1.0, 1.0)


def _replica():
    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # cross-replica context: the caller runs one "replica"
        return 0, 1
    return ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync


def replica_noise(kind, shape_tail, local_batch, seed, step, stream):
    """This replica's slice of the global batch's noise drawn from ``(seed + stream, step)``."""
    rid, n = _replica()
    key = tf.stack([tf.cast(seed + stream, tf.int64), tf.cast(step, tf.int64)])
    global_shape = tf.concat([[local_batch * n], shape_tail], 0)
    draw = tf.random.stateless_normal if kind == "normal" else tf.random.stateless_uniform
    values = draw(global_shape, seed=key)
    return values[rid * local_batch:(rid + 1) * local_batch]


def gradient_penalty(critic, real, fake, eps):
    """``(mean((||grad_x critic(x_hat)||_2 - 1)^2), x_hat)`` on ``x_hat = eps*real + (1-eps)*fake``
    (``eps`` one value per sample, broadcast over its pixels)."""
    x_hat = eps * real + (1.0 - eps) * fake
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        score = critic(x_hat, training=True)
    grad = tape.gradient(score, x_hat)
    axes = list(range(1, grad.shape.rank))
    norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=axes) + 1e-12)  # 1e-12: a finite gradient at 0
    return tf.reduce_mean(tf.square(norm - 1.0)), x_hat


def clip_critic(critic, clip, strategy):
    """Every trainable critic weight into ``[-clip, clip]`` (a synchronised update per variable)."""
    def fn(distribution, variables):
        for v in variables:
            distribution.extended.update(
                v, lambda var: var.assign(tf.clip_by_value(var, -clip, clip)), group=False)
    tf.__internal__.distribute.interim.maybe_merge_call(fn, strategy, critic.trainable_variables)


def critic_step(gan, data, s):
    """One critic update on a batch of real images; updates the loss trackers."""
    x = keras.utils.unpack_x_y_sample_weight(data)[0]
    real = to_unit(x, gan.value_range)
    batch = tf.shape(real)[0]
    _, replicas = _replica()
    step = gan.optimizer.iterations
    z = replica_noise("normal", [gan.z_dim], batch, gan.train_seed, step, 0)
    fake = tf.stop_gradient(gan.generator(z, training=True))
    critic = gan.critic
    with tf.GradientTape() as tape:
        wasserstein = tf.reduce_mean(critic(real, training=True)) - tf.reduce_mean(critic(fake, training=True))
        loss = -wasserstein
        gp = tf.zeros(())
        if s["gp_weight"]:
            eps = replica_noise("uniform", [1] * (real.shape.rank - 1), batch, gan.train_seed, step, 2)
            gp, _ = gradient_penalty(critic, real, fake, eps)
            loss = loss + s["gp_weight"] * gp
        scaled = loss / replicas  # the all-reduce sums the replicas' gradients
    grads = tape.gradient(scaled, critic.trainable_variables)
    gan.optimizer.apply_gradients(zip(grads, critic.trainable_variables))
    if s["clip_value"] is not None:
        clip_critic(critic, float(s["clip_value"]), tf.distribute.get_strategy())
    gan.trackers["loss"].update_state(loss)
    gan.trackers["wasserstein"].update_state(wasserstein)
    if s["gp_weight"]:
        gan.trackers["gp"].update_state(gp)
    # a value read after the update (and its all-reduce) is done on this replica: the generator
    # step waits for it, so the two steps' collectives never interleave across devices
    return tf.zeros(()) * tf.reduce_sum(critic.trainable_variables[0])


def generator_step(gan, data, s, after=None):
    """One generator update (a batch of new z the size of this replica's real batch), run after
    the tensor ``after`` (the critic step's token)."""
    if after is not None:
        with tf.control_dependencies([after]):
            return generator_step(gan, data, s)
    x = keras.utils.unpack_x_y_sample_weight(data)[0]
    batch = tf.shape(x)[0]
    _, replicas = _replica()
    z = replica_noise("normal", [gan.z_dim], batch, gan.train_seed, gan.generator_optimizer.iterations, 1)
    generator = gan.generator
    with tf.GradientTape() as tape:
        g_loss = -tf.reduce_mean(gan.critic(generator(z, training=True), training=True))
        scaled = g_loss / replicas
    grads = tape.gradient(scaled, generator.trainable_variables)
    gan.generator_optimizer.apply_gradients(zip(grads, generator.trainable_variables))
    gan.trackers["g_loss"].update_state(g_loss)
    return g_loss


def logs(gan):
    """The logged values; ``loss`` (the critic loss) turns NaN when any value is, so a NaN
    anywhere stops a run at the batch it appears (finetune's guard, keras.callbacks.TerminateOnNaN)."""
    out = {name: tracker.result() for name, tracker in gan.trackers.items()}
    finite = tf.reduce_all([tf.math.is_finite(v) for v in out.values()])
    out["loss"] = tf.where(finite, out["loss"], tf.constant(float("nan")))
    out["critic_steps"] = tf.cast(gan.optimizer.iterations, tf.float32)
    out["generator_steps"] = tf.cast(gan.generator_optimizer.iterations, tf.float32)
    return out


def train_step(gan, data):
    """One Keras step in the current replica context (no cross-replica synchronisation needed:
    the default strategy). ``make_train_function`` splits the same work under a strategy."""
    s = gan.train_settings
    critic_step(gan, data, s)
    due = generator_due(gan.optimizer.iterations, gan.generator_optimizer.iterations, s)
    tf.cond(due, lambda: generator_step(gan, data, s), lambda: tf.zeros(()))
    return logs(gan)


def make_train_function(gan):
    """The train function ``fit`` calls: critic step per replica, the generator step when due
    (decided in cross-replica context), ``steps_per_execution`` steps per call."""
    strategy = gan.distribute_strategy
    s = gan.train_settings

    def one_step(iterator):
        data = next(iterator)
        token = strategy.run(lambda d: critic_step(gan, d, s), args=(data,))
        with tf.control_dependencies(strategy.experimental_local_results(token)):
            due = generator_due(gan.optimizer.iterations, gan.generator_optimizer.iterations, s)
        tf.cond(due, lambda: strategy.reduce("sum", strategy.run(lambda d, t: generator_step(gan, d, s, t),
                                                                 args=(data, token)), axis=None),
                lambda: tf.zeros(()))
        gan._train_counter.assign_add(1)
        return logs(gan)

    single = gan._steps_per_execution is None or int(gan._steps_per_execution.numpy().item()) == 1

    def train_function(iterator):
        if single:
            return one_step(iterator)
        out = logs(gan)
        for _ in tf.range(gan._steps_per_execution):
            out = one_step(iterator)
        return out

    if gan.run_eagerly:
        return train_function
    return tf.function(train_function, reduce_retracing=True)


def test_step(gan, data):
    """Validation: the Wasserstein estimate ``mean D(real) - mean D(fake)`` (no update)."""
    x = keras.utils.unpack_x_y_sample_weight(data)[0]
    real = to_unit(x, gan.value_range)
    z = replica_noise("normal", [gan.z_dim], tf.shape(real)[0], gan.train_seed, 0, 3)
    fake = gan.generator(z, training=False)
    w = tf.reduce_mean(gan.critic(real, training=False)) - tf.reduce_mean(gan.critic(fake, training=False))
    gan.trackers["wasserstein"].update_state(w)
    return {"wasserstein": gan.trackers["wasserstein"].result()}
