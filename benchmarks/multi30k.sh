#!/usr/bin/env bash
# Multi30k English->German on this machine's CPU: train configs/multi30k.py (<= 30 min with the vocabulary),
# average the last checkpoints, beam-4 decode test_2016_flickr, score with sacreBLEU 13a (+ signature) and chrF.
# Writes benchmarks/multi30k.json (scores, timings, learning curve: BLEU on 300 valid sentences vs wall clock).
#   benchmarks/multi30k.sh [WORKDIR] [-- --config.KEY=VALUE ...]   (data: ../shared/data/multi30k or data/multi30k)
# TARGET=fr benchmarks/multi30k.sh runs/multi30k_enfr: English->French with the same recipe
# (benchmarks/multi30k_enfr.json).
set -euo pipefail
cd "$(dirname "$0")/.."
workdir=${1:-runs/multi30k}; shift || true
[ "${1:-}" = "--" ] && shift
data=$(python -c "import sys; sys.path.insert(0, 'configs'); import multi30k; print(multi30k.DATA_DIR)")
target=${TARGET:-de}
result=benchmarks/multi30k$([ "$target" = de ] || echo "_en$target").json
start=$(date +%s)
t2t-jax train --config configs/multi30k.py --workdir "$workdir" --config.data.target_lang="$target" \
  --config.data.train="text:$data/train.en,$data/train.$target" --config.data.eval="text:$data/valid.en,$data/valid.$target" \
  "$@"
trained=$(date +%s)
t2t-jax eval --workdir "$workdir" --checkpoint averaged --source "$data/test.en" --reference "$data/test.$target" \
  --output "$workdir/test.hyp.$target" | tee "$workdir/test.scores"
done_at=$(date +%s)
python - "$workdir" "$((trained - start))" "$((done_at - trained))" "$target" "$result" <<'PY'
import json, re, sys
workdir, train_s, eval_s, target, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
config = json.load(open(f"{workdir}/config.json"))
decode, train = config["decode"], config["train"]
curve = [{"step": r["step"], "seconds": round(r["time"] - rows[0]["time"], 1), "valid_bleu_300": round(r["bleu"], 2),
          "valid_loss": round(r["loss"], 4)} for r in rows if r["kind"] == "eval"]
scores = open(f"{workdir}/test.scores").read()
bleu = float(re.search(r"sacreBLEU ([\d.]+)", scores).group(1))
result = {
    "task": f"Multi30k en->{target}, test_2016_flickr (1000 sentences), beam {decode['beam_size']}, "
            f"alpha {decode['alpha']}, average of the last {train['average_last']} checkpoints",
    "sacrebleu": bleu, "sacrebleu_signature": re.search(r"sacreBLEU [\d.]+  \((.*)\)", scores).group(1),
    "chrf": float(re.search(r"chrF2 ([\d.]+)", scores).group(1)),
    "tokenized_bleu_paper_style": float(re.search(r"tokenized BLEU ([\d.]+)", scores).group(1)),
    "train_wall_seconds_including_vocabulary_and_startup": train_s, "test_decode_and_score_seconds": eval_s,
    "learning_curve": curve,
}
json.dump(result, open(path, "w"), indent=1)
print(json.dumps({k: v for k, v in result.items() if k != "learning_curve"}, indent=1))
PY
