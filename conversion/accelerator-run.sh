#!/usr/bin/env bash
# The next accelerator run of the age/gender recipe (model card, "Retrain"), on the device host:
# run from the repository root with .cache/pack and .cache/whl carried (`make accelerator-pack`
# makes both here), as one call:  bash conversion/accelerator-run.sh [SECONDS [PIPELINE OPTION ...]]
#
# Trains the whole recipe into /tmp/R and copies each stage's network to $OUT as soon as it is
# finished, so a call cut short by its time limit still brings back what was done. SECONDS (default
# 530) bounds the training, leaving the rest of a 10-minute call for the copies; options after it
# go to conversion.pipeline (a rehearsal on a small pack: 300 --epochs 2 --robust-epochs 2).
set -uo pipefail
limit=${1:-530}
shift || true
out=${OUT:?run this on the device host, where OUT is set}
run=/tmp/R
stages="clean robust-7 robust-8 robust age"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .cache/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
nvidia-smi -L
python3 -m conversion.pack unpack .cache/pack --cache /tmp/C || exit 1

# A stage's model.keras is taken once it has not changed for 10 s (Keras writes it in one go at
# the stage's end), without its optimizer: with AdamW's moments and the EMA copy a network is 17-22 MB,
# over the 16 MiB a returned file may have; without, 5.7 MB, which is all that the next stages and
# conversion read (every load is compile=False). seeds.txt goes with the souped network.
strip='import sys, keras; keras.models.load_model(sys.argv[1], compile=False).save(sys.argv[2])'
save() {
    for stage in $stages; do
        model=$run/$stage/model.keras
        if [ -f "$model" ] && [ ! -f "$out/$stage/model.keras" ] && [ -n "$(find "$model" -mmin +0.17)" ]; then
            mkdir -p "$out/$stage" && python3 -c "$strip" "$model" "/tmp/$stage.keras" 2>/dev/null &&
                mv "/tmp/$stage.keras" "$out/$stage/model.keras"
        fi
    done
    if [ -f "$run/robust/seeds.txt" ] && [ -d "$out/robust" ]; then cp "$run/robust/seeds.txt" "$out/robust/"; fi
}
(while sleep 5; do save; done) &
watcher=$!

timeout "$limit" python3 -m conversion.pipeline --cache /tmp/C --run "$run" --size 80 --workers 15 \
    --photos lfw fairface aaf --child-weight 3 --seeds 7 8 --train-only "$@" >"$out/log.txt" 2>&1
echo "pipeline exit status $?"
kill "$watcher"
sleep 11
save
grep -v 'it/s\]$' "$out/log.txt" | tail -60
ls -l "$out"/*
