#!/usr/bin/env bash
# Send a DVC pipeline of this repository to Slurm. See --help.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<USAGE
Usage: slurm/submit.sh [options]

Submits the pipeline in the current checkout (shared by all nodes) as three steps:
  1. one job:      dvc repro prepare
  2. a job array:  one task per train@<entry> stage (the list comes from
                   'dvc stage list'), each 'dvc --wait-for-lock repro -s train@<entry>';
                   starts after 1 succeeds
  3. one job:      dvc repro (the evaluate stages and figures), then dvc status;
                   starts after every task of 2 succeeded
A train task that is preempted, or near its time limit, is requeued and resumes from
its last checkpoint. The result is the same dvc.lock, metrics and figures as a local
'dvc repro'. Parameters come from params.yaml only; these options are cluster settings.

Options (each also read from the environment variable shown; flags win):
  -C, --dir DIR          pipeline folder holding dvc.yaml   [NB_DIR, default: .]
  -p, --partition NAME   sbatch --partition                 [NB_PARTITION, default: cluster's]
  -A, --account NAME     sbatch --account                   [NB_ACCOUNT, default: none]
  -t, --time LIMIT       time limit per job, e.g. 24:00:00  [NB_TIME, default: partition's]
  -g, --gres SPEC        GPUs per train/evaluate job, e.g. gpu:1 [NB_GRES, default: none]
  -c, --cpus N           CPUs per task                      [NB_CPUS, default: 1]
  -m, --mem SIZE         memory per job, e.g. 16G           [NB_MEM, default: cluster's]
  -j, --max-concurrent N at most N train tasks at once      [NB_MAX_CONCURRENT, default: all]
  -s, --sbatch-args ARGS extra sbatch arguments, e.g. "--qos=long" [NB_SBATCH_ARGS]
  -n, --dry-run          print the sbatch commands, submit nothing
  -h, --help             this text

Logs: DIR/.slurm/<date-time>/*.out. Watch with: squeue -u "\$USER"
USAGE
}

die() { echo "error: $*" >&2; exit 2; }

dir=${NB_DIR:-$PWD} partition=${NB_PARTITION:-} account=${NB_ACCOUNT:-} time=${NB_TIME:-}
gres=${NB_GRES:-} cpus=${NB_CPUS:-1} mem=${NB_MEM:-} max=${NB_MAX_CONCURRENT:-}
extra=${NB_SBATCH_ARGS:-} dry=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n|--dry-run) dry=1; shift; continue ;;
    -C|--dir|-p|--partition|-A|--account|-t|--time|-g|--gres|-c|--cpus|-m|--mem|\
    -j|--max-concurrent|-s|--sbatch-args)
      # a value that looks like an option is a forgotten value (sbatch-args excepted)
      [[ $# -ge 2 && ( $2 != -* || $1 == -s || $1 == --sbatch-args ) ]] \
        || die "$1 needs a value (see --help)" ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  case "$1" in
    -C|--dir) dir=$2 ;; -p|--partition) partition=$2 ;; -A|--account) account=$2 ;;
    -t|--time) time=$2 ;; -g|--gres) gres=$2 ;; -c|--cpus) cpus=$2 ;; -m|--mem) mem=$2 ;;
    -j|--max-concurrent) max=$2 ;; -s|--sbatch-args) extra=$2 ;;
  esac
  shift 2
done
[[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "--cpus / NB_CPUS = '$cpus': must be a positive integer"
[[ -z "$max" || "$max" =~ ^[1-9][0-9]*$ ]] \
  || die "--max-concurrent / NB_MAX_CONCURRENT = '$max': must be a positive integer"
[[ -f "$dir/dvc.yaml" ]] || die "--dir / NB_DIR = '$dir': no dvc.yaml there"
dir=$(cd "$dir" && pwd)

# The jobs inherit this environment (sbatch --export=ALL): put the project's venv first.
if [[ -x "$REPO/.venv/bin/dvc" ]]; then export PATH="$REPO/.venv/bin:$PATH"; fi
command -v dvc >/dev/null || die "dvc not found: run 'make setup' or activate the venv"
[[ $dry == 1 ]] || command -v sbatch >/dev/null || die "sbatch not found: is this a Slurm login node?"

cd "$dir"
# Fail here, not in every task, on bad params (the same message the stages give).
python -c 'import sys
from normbounds.pipeline.config import ConfigError, load_params
try:
    load_params("params.yaml")
except ConfigError as err:
    sys.exit(f"error: {err}")' || exit 2
mapfile -t stages < <(dvc stage list --name-only | grep '^train@')
[[ ${#stages[@]} -gt 0 ]] || die "no train@<entry> stages in $dir/dvc.yaml"

logs="$dir/.slurm/$(date +%Y%m%d-%H%M%S)"
if [[ $dry == 0 ]]; then
  mkdir -p "$logs"
  printf '%s\n' "${stages[@]}" > "$logs/stages.txt"
fi

common=(--parsable --chdir="$dir" --export=ALL --cpus-per-task="$cpus")
[[ -n "$partition" ]] && common+=(--partition="$partition")
[[ -n "$account" ]] && common+=(--account="$account")
[[ -n "$time" ]] && common+=(--time="$time")
[[ -n "$mem" ]] && common+=(--mem="$mem")
read -r -a extra_args <<< "$extra"
common+=("${extra_args[@]}")
gpu=()
[[ -n "$gres" ]] && gpu=(--gres="$gres")

submit() {  # NAME SBATCH-ARGS... -> prints the job id (a placeholder in a dry run)
  local name=$1
  shift
  if [[ $dry == 1 ]]; then
    echo "sbatch --job-name=$name $*" >&2  # stderr: stdout carries the id
    echo "<$name>"
  else
    sbatch --job-name="$name" "$@" | cut -d';' -f1
  fi
}

last=$(( ${#stages[@]} - 1 ))
prep=$(submit nb-prepare "${common[@]}" --output="$logs/prepare.out" \
  "$REPO/slurm/job.sh" prepare)
train=$(submit nb-train "${common[@]}" "${gpu[@]}" --array="0-$last${max:+%$max}" \
  --dependency="afterok:$prep" --requeue --signal=B:USR1@120 --open-mode=append \
  --output="$logs/train-%a.out" "$REPO/slurm/job.sh" train "$logs/stages.txt")
rest=$(submit nb-rest "${common[@]}" "${gpu[@]}" --dependency="afterok:$train" \
  --output="$logs/rest.out" "$REPO/slurm/job.sh" rest)

if [[ $dry == 1 ]]; then
  echo "dry run from $dir: nothing submitted (prepare, a train array of ${#stages[@]} tasks, rest)"
else
  echo "submitted from $dir: prepare $prep, train array $train (${#stages[@]} tasks), rest $rest"
  echo "logs in $logs; watch with: squeue -u \"\$USER\""
  echo "$prep $train $rest" > "$logs/jobs.txt"
fi
