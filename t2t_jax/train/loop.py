"""train_and_evaluate: the recipe, start to end.

vocabulary -> model and optimizer -> state (restored from the workdir, or created sharded) -> for each update:
  k microbatches -> gradients -> Adam update; every interval: progress line; eval loss (and BLEU) and the best
  checkpoint; checkpoints (state + data position) -> at the end, or on SIGTERM or the time budget: a last
  checkpoint, and optionally the average of the last checkpoints.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from t2t_jax import configuration, data, sharding, storage
from t2t_jax.data.tokenizer import VOCAB_FILE
from t2t_jax.distributed import agree, initialize_from_environment, wait_for_all
from t2t_jax.errors import UserError
from t2t_jax.evaluate import score
from t2t_jax.settings import TrainSettings
from t2t_jax.train import checkpoint, init_from, step
from t2t_jax.train.budget import TimeBudget
from t2t_jax.train.optim import learning_rate_schedule
from t2t_jax.train.reporting import Reporter, bits_per_byte, host_metrics
from t2t_jax.train.state import training
from t2t_jax.train.stopping import SIGTERM, TIME_BUDGET, SigtermFlag, StopVote
from t2t_jax.train.workdir_lock import WorkdirLock
from t2t_jax.translate import Translator


def accumulation_steps(config: ml_collections.ConfigDict, devices: int) -> int:
    """Microbatches per update so that an update holds about train.tokens_per_update tokens (per side) when each
    of `devices` devices takes data.batch_tokens per microbatch."""
    per_microbatch = config.data.batch_tokens * devices
    return max(1, math.ceil(config.train.tokens_per_update / per_microbatch)) if config.train.tokens_per_update else 1


def _check_workdir_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    if not storage.is_file(storage.join(workdir, configuration.CONFIG_FILE)):
        return
    checkpoints = storage.path(storage.join(workdir, "checkpoints"))
    trained = checkpoints.is_dir() and any(item.name.isdigit() for item in checkpoints.iterdir())
    if trained and not storage.exists(storage.join(workdir, VOCAB_FILE)):
        raise UserError(  # a new vocabulary would give the trained ids other meanings
            f"{workdir} holds checkpoints but its {VOCAB_FILE} is missing: put the run's vocabulary back "
            "(the model's token ids depend on it), or train into a new --workdir"
        )
    differences = configuration.model_differences(configuration.load_workdir_config(workdir), config)
    if differences:
        raise UserError(
            f"{workdir} holds a model trained with other settings ({'; '.join(differences)}): "
            "use a new workdir or the same settings"
        )


class Trainer:
    """The compiled steps and the state of one training run."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str) -> None:
        self.config, self.workdir = config, workdir
        self.settings = TrainSettings.from_config(config.train)
        self.reporter = Reporter(workdir, self.settings.steps)
        _prepare_data(config, self.reporter)
        self.tokenizer = data.build_vocabulary(config.data, workdir)
        self.mesh = sharding.make_mesh(config.mesh)
        setup = training(config, self.tokenizer.vocab_size, self.mesh)
        self.model_cfg, programs = setup.model_config, setup.programs
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        self.batch_multiple = max(1, sharding.batch_parallelism(self.mesh) // jax.process_count())
        self.accumulation = accumulation_steps(config, jax.device_count())
        self.tokens_per_update = self.accumulation * config.data.batch_tokens * jax.device_count()
        self.schedule = learning_rate_schedule(self.settings, self.model_cfg.d_model)
        self.iterator = self._iterator(config.data.seed)
        self.checkpoints = checkpoint.Checkpoints(workdir, keep=self.settings.keep_checkpoints)
        self.abstract = setup.abstract  # the state's shapes and shardings: a restore and averaging target
        restored = self.checkpoints.restore_latest(setup.abstract, self.iterator)
        if restored is None:
            self.state, _ = sharding.sharded_init(setup.init, self.mesh)
            if init_from.source(config):
                params, trained_step = init_from.initial_params(config, self.tokenizer.vocab_size, self.mesh)
                self.state = self.state.replace(params=params)
                self.reporter.say(f"fine-tuning: parameters of {self.settings.init_from} (step {trained_step}), "
                                  "a fresh optimizer, step 0")
            self.meta: dict[str, Any] = {"train_seconds": 0.0, "best_score": None, "best_step": None}
        else:
            self.state, self.meta, data_restored = restored
            self.reporter.say(f"resumed from step {int(self.state.step)} in {workdir}")
            if not data_restored:
                self.iterator = self._fresh_iterator(int(self.state.step))
        self.train_step, self.compute_gradients = programs.train_step, programs.compute_gradients
        self.add, self.apply_gradients, self.eval_step = programs.add, programs.apply_gradients, programs.eval_step
        self._translator = None
        self._eval_byte_count: int | None = None

    def _fresh_iterator(self, step: int) -> data.TrainIterator:
        """The data stream on a topology other than the checkpoint's: each process starts its shard anew, shuffled
        (or generated) with seed data.seed + step, so that it does not replay the run's first batches."""
        writers = self.checkpoints.data_writers(step)
        self.reporter.say(
            f"checkpoint {step} holds the data positions of {writers} process(es), this run has "
            f"{jax.process_count()}: each process starts its share of the data anew with seed data.seed + {step}"
        )
        return self._iterator(self.config.data.seed + step)

    def _iterator(self, seed: int) -> data.TrainIterator:
        """This process's training batches: data.batch_tokens for each of its devices."""
        return data.train_iterator(self.config.data, self.tokenizer, batch_multiple=self.batch_multiple,
                                   devices=jax.local_device_count(), seed=seed)

    def update(self, batches: list[dict[str, np.ndarray]], lr_scale: float = 1.0) -> dict[str, Any]:
        """One optimizer update from `accumulation` microbatches, its learning rate times `lr_scale`."""
        number = int(self.state.step)
        seed, scale = self.settings.seed, jnp.asarray(lr_scale, jnp.float32)
        if len(batches) == 1:
            self.state, metrics = self.train_step(
                self.state, sharding.global_batch(batches[0], self.batch_sharding), step.dropout_key(seed, number),
                scale,
            )
            return metrics
        grads = metrics = None
        for index, batch in enumerate(batches):
            micro_grads, micro_metrics = self.compute_gradients(
                self.state.params, sharding.global_batch(batch, self.batch_sharding),
                step.dropout_key(seed, number, index),
            )
            grads = micro_grads if grads is None else self.add(grads, micro_grads)
            metrics = micro_metrics if metrics is None else step.add_trees(metrics, micro_metrics)
        self.state, metrics = self.apply_gradients(self.state, grads, metrics, scale)
        return metrics

    def evaluate(self) -> dict[str, float]:
        """Loss and perplexity on the eval set; BLEU of beam decoding too when train.eval_bleu; for a language
        model also bits per byte (comparable across vocabularies)."""
        batch_size = max(32 // self.batch_multiple, 1) * self.batch_multiple
        sums = None
        for batch in data.eval_batches(
            self.config.data, self.tokenizer, batch_size=batch_size, max_examples=self.settings.eval_examples or None
        ):
            metrics = self.eval_step(self.state.params, sharding.global_batch(batch, self.batch_sharding))
            sums = metrics if sums is None else step.add_trees(sums, metrics)
        result = host_metrics(sums)
        if self.model_cfg.kind == "decoder_only":
            result["bits_per_byte"] = bits_per_byte(float(sums["nll"]), self._eval_bytes())
        elif self.settings.eval_bleu:
            result["bleu"] = self.bleu()
        return result

    def _eval_bytes(self) -> int:
        """The UTF-8 bytes of the eval text a language model's loss covers: each line and its end (the EOS)."""
        if self._eval_byte_count is None:
            pairs = data.eval_pairs(self.config.data, max_examples=self.settings.eval_examples or None)
            self._eval_byte_count = sum(len(target.encode()) + 1 for _, target in pairs)
        return self._eval_byte_count

    def bleu(self) -> float:
        pairs = data.eval_pairs(self.config.data, max_examples=self.settings.bleu_examples or None)
        # each host decodes a share of the set with its own devices, from a full copy of the parameters
        single = jax.process_count() == 1
        params = self.state.params if single else multihost_utils.process_allgather(self.state.params, tiled=True)
        if self._translator is None:
            mesh = self.mesh if single else sharding.decoding_mesh(self.config.mesh)
            self._translator = Translator(self.config, params, self.tokenizer, mesh=mesh)
        self._translator.set_params(params)
        hypotheses = self._translator.translate_on_all_hosts([source for source, _ in pairs])
        return score(hypotheses, [target for _, target in pairs], self.config.data.target_lang).bleu

    def save(self) -> None:
        self.checkpoints.save(int(self.state.step), self.state, self.iterator, self.meta)

    def maybe_save_best(self, eval_metrics: dict[str, float]) -> None:
        score = eval_metrics["bleu"] if "bleu" in eval_metrics else -eval_metrics["loss"]
        if self.meta["best_score"] is None or score > self.meta["best_score"]:
            self.meta.update(best_score=score, best_step=int(self.state.step))
            self.checkpoints.save_best(int(self.state.step), self.state, self.meta)


# How long the other hosts wait for process 0 to prepare a TFDS dataset (WMT14 en-de: about an hour).
PREPARE_TIMEOUT_S = 6 * 3600


def _prepare_data(config: ml_collections.ConfigDict, reporter: Reporter) -> None:
    """TFDS sources are prepared before anything reads them. On several hosts process 0 prepares first; then each
    other host finds them prepared (a data_dir all hosts share: gs://, NFS) or prepares its own copy (a data_dir
    on each host's own disk). A failure on any host is one error on all of them."""
    if "tfds:" not in f"{config.data.train},{config.data.eval}":
        return
    if jax.process_count() == 1:
        for name in data.prepare_tfds_sources(config.data):
            reporter.say(f"prepared TFDS {name} in {config.data.tfds_data_dir or 'the default data dir'}")
        return
    for turn, mine in (("process 0", jax.process_index() == 0), ("the other processes", jax.process_index() > 0)):
        error = None
        if mine:
            try:
                prepared = data.prepare_tfds_sources(config.data)
                if prepared:
                    print(f"process {jax.process_index()} prepared TFDS {', '.join(prepared)}", flush=True)
            except UserError as problem:
                error = str(problem)
        wait_for_all(f"t2t_jax TFDS prepared by {turn}", PREPARE_TIMEOUT_S)
        agree(error)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (resuming from `workdir` if it holds checkpoints) until train.steps, train.max_seconds or
    SIGTERM (on any process: all stop after the same step). Returns the last train and eval metrics."""
    initialize_from_environment()  # multi-host runs: before anything asks JAX for its devices
    storage.make_folder(workdir)
    lock = _lock_workdir(workdir)
    try:
        if init_from.source(config):
            agree(_problem(lambda: init_from.prepare(config)))  # the trained model's vocabulary, its shapes checked
        agree(_problem(lambda: _check_workdir_config(config, workdir)))  # every host stops on it, none waits
        data.check_sides(config.data, decoder_only=configuration.is_language_model(config))  # files unread
        if jax.process_index() == 0:
            configuration.save_config(config, workdir)
        trainer = Trainer(config, workdir)
        sigterm = SigtermFlag()
        try:
            return _run(trainer, sigterm)
        finally:
            sigterm.restore()
            trainer.checkpoints.wait()
            trainer.checkpoints.close()
            trainer.reporter.close()
    finally:
        if lock is not None:
            lock.release()


def _problem(check: Any) -> str | None:
    """The UserError `check()` raises, as text (None if it passes)."""
    try:
        check()
    except UserError as error:
        return str(error)
    return None


def _lock_workdir(workdir: str) -> WorkdirLock | None:
    """Process 0 takes the workdir's lock for the whole run; if it cannot, every process stops with its reason."""
    lock, error = None, None
    if jax.process_index() == 0:
        lock = WorkdirLock(workdir)
        try:
            lock.acquire()
        except UserError as refused:
            lock, error = None, str(refused)
    agree(error)
    return lock


def _require_finite(loss_plus_update_norm: float, current: int, workdir: str) -> None:
    if not math.isfinite(loss_plus_update_norm):
        raise UserError(
            f"the loss became {loss_plus_update_norm} by step {current} (or the update did): training stopped; "
            f"the last good checkpoint is kept in {workdir}/checkpoints (try a lower learning rate)"
        )


def _run(trainer: Trainer, sigterm: SigtermFlag) -> dict[str, Any]:
    settings, reporter = trainer.settings, trainer.reporter
    first_step = int(trainer.state.step)
    horizon = (f"for {settings.max_seconds:g} s of training (the cosine decays over the time budget; at most "
               f"{settings.steps} steps)" if settings.timed else f"-> {settings.steps} steps")
    reporter.say(
        f"training {first_step} {horizon} on {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"mesh {dict(trainer.mesh.shape)}, ~{trainer.tokens_per_update:,} tokens per update (per side: "
        f"{trainer.accumulation} microbatch(es) x {trainer.config.data.batch_tokens} x {jax.device_count()} devices), "
        f"vocabulary {trainer.tokenizer.vocab_size}, compute {trainer.model_cfg.dtype.name} "
        f"(parameters {trainer.model_cfg.param_dtype.name})"
    )
    started, interval_start, interval_tokens, interval_sums = time.time(), time.time(), 0, None
    previous_seconds = float(trainer.meta.get("train_seconds", 0.0))
    last: dict[str, Any] = {}
    current, vote, stopped_by = first_step, StopVote(), ()
    budget = TimeBudget(settings, previous_seconds)  # the checkpoint's training time: the same on every process
    while current < settings.steps:
        batches = [next(trainer.iterator) for _ in range(trainer.accumulation)]
        interval_tokens += sum(int(np.count_nonzero(b["inputs"]) + np.count_nonzero(b["targets"])) for b in batches)
        lr_scale = budget.lr_scale()
        metrics = trainer.update(batches, lr_scale)
        interval_sums = metrics if interval_sums is None else step.add_trees(interval_sums, metrics)
        current += 1
        trainer.meta["train_seconds"] = previous_seconds + time.time() - started
        out_of_time = 0 < settings.max_seconds <= trainer.meta["train_seconds"]
        # the same on every process: why to stop, and the training time the schedule and the saves follow
        stopped_by, agreed_seconds = vote.decide((sigterm.raised, out_of_time), trainer.meta["train_seconds"])
        averaging_save = budget.advance(agreed_seconds)
        ending = current >= settings.steps or bool(stopped_by)
        if current % settings.log_every == 0 or ending:
            train_metrics = host_metrics(interval_sums)
            train_metrics.update(
                learning_rate=float(trainer.schedule(current - 1)) * lr_scale,
                tokens_per_second=interval_tokens / max(time.time() - interval_start, 1e-9),
            )
            _require_finite(train_metrics["loss"] + train_metrics["update_norm"], current, trainer.workdir)
            left = max(settings.max_seconds - trainer.meta["train_seconds"], 0.0) if settings.timed else None
            reporter.train_line(current, train_metrics, current - first_step, left)
            reporter.write(current, "train", train_metrics)
            last["train"] = train_metrics
            interval_start, interval_tokens, interval_sums = time.time(), 0, None
        if current % settings.eval_every == 0 or (ending and SIGTERM not in stopped_by):  # preempted: save first
            eval_metrics = trainer.evaluate()
            reporter.write(current, "eval", eval_metrics)
            reporter.say(f"eval at step {current}: " + "  ".join(f"{k} {v:.4g}" for k, v in eval_metrics.items()))
            last["eval"] = eval_metrics
            trainer.maybe_save_best(eval_metrics)
        periodic = current % settings.checkpoint_every == 0 and not budget.averaging()
        if periodic or averaging_save or ending:
            # never checkpoint a diverged state
            _require_finite(float(metrics["loss"]) + float(metrics["update_norm"]), current, trainer.workdir)
            trainer.save()
        if stopped_by:
            budget = f"{TIME_BUDGET} of train.max_seconds={settings.max_seconds:g}"
            why = " and ".join(budget if reason == TIME_BUDGET else reason for reason in stopped_by)
            reporter.say(f"stopped at step {current} by {why}; checkpoint saved, run again to resume")
            break
    stopped_by = stopped_by or vote.settle()
    trainer.checkpoints.wait()
    # a time budget ends the run as planned, SIGTERM only interrupts it; every process averages (sharded arrays)
    if settings.average_last > 0 and SIGTERM not in stopped_by:
        averaged_step, steps = checkpoint.average_checkpoints(trainer.workdir, settings.average_last, trainer.abstract)
        reporter.say(f"averaged checkpoints {steps} into {trainer.workdir}/averaged/{averaged_step}")
    return last
