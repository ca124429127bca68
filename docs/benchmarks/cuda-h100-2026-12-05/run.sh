set +e
export PYTHONUNBUFFERED=1
L=$OUT/log.txt
{ date; nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; python3 -c "import torch,sys;print(sys.version);print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"; } >>$L 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >>$L 2>&1
export PYTHONPATH=/tmp/site:$PWD ADVLAB_DATA=$PWD/.gpudata ADVLAB_CACHE=/tmp/advcache MPLBACKEND=Agg
A="python3 -m advlab.cli.main"
step() { echo "=== $(date +%T) $*" >>$L; }
step plan omari text;  timeout 90 $A plan omari2024 --profile paper --device cuda --workers 1 8 40 >>$L 2>&1; echo "rc=$?" >>$L
step plan omari json;  timeout 90 $A plan omari2024 --profile paper --device cuda --workers 1 8 40 --json >$OUT/plan-omari.json 2>>$L; echo "rc=$?" >>$L
step plan mygdalis text; timeout 150 $A plan mygdalis2020 --profile paper --device cuda --workers 1 8 40 >>$L 2>&1; echo "rc=$?" >>$L
step batch; timeout 120 python3 .gpudata/batch.py $OUT/batch.json >>$L 2>&1; echo "rc=$?" >>$L
step digits serial cuda; timeout 120 $A reproduce omari2024 --profile digits --set device=cuda --out /tmp/r-serial --cache /tmp/c1 >/tmp/serial.log 2>&1; echo "rc=$?" >>$L; tail -5 /tmp/serial.log >>$L
step digits local2 cuda; timeout 120 $A reproduce omari2024 --profile digits --set device=cuda --executor local --workers 2 --out /tmp/r-local --cache /tmp/c2 >/tmp/local.log 2>&1; echo "rc=$?" >>$L; tail -5 /tmp/local.log >>$L
cp /tmp/r-serial/results.json $OUT/digits-serial.json; cp /tmp/r-local/results.json $OUT/digits-local.json; cp /tmp/r-serial/manifest.json $OUT/digits-serial-manifest.json
cmp /tmp/r-serial/results.json /tmp/r-local/results.json >>$L 2>&1 && echo "serial == local (bytes)" >>$L
step done; cat $L
