"""A tiny parallel-text TFDS dataset that prepares itself without a download (for multi-host preparation tests).
Importing this module registers it as `t2t_tiny_parallel`. Each preparation appends the preparing process's
T2T_PROCESS_ID to the file named by T2T_TEST_PREPARE_LOG, so a test can see who prepared."""

import os

import tensorflow_datasets as tfds

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
WOERTER = ["eins", "zwei", "drei", "vier", "fuenf", "sechs", "sieben", "acht", "neun"]


class T2tTinyParallel(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict({"en": tfds.features.Text(), "de": tfds.features.Text()})
        return tfds.core.DatasetInfo(builder=self, features=features, supervised_keys=("en", "de"))

    def _split_generators(self, dl_manager):
        log = os.environ.get("T2T_TEST_PREPARE_LOG")
        if log:
            with open(log, "a") as f:
                f.write(os.environ.get("T2T_PROCESS_ID", "0") + "\n")
        return {"train": self._generate_examples(400, 0), "validation": self._generate_examples(16, 7)}

    def _generate_examples(self, count, seed):
        for index in range(count):
            picks = [(index * 7 + seed + k * 3) % 9 for k in range(1 + index % 5)]
            yield index, {"en": " ".join(WORDS[p] for p in picks), "de": " ".join(WOERTER[p] for p in picks)}
