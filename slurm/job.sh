#!/usr/bin/env bash
# One Slurm job of the pipeline, submitted by slurm/submit.sh (not meant to be run by hand).
#   job.sh prepare            dvc repro prepare
#   job.sh train STAGES_FILE  dvc repro -s <line SLURM_ARRAY_TASK_ID+1 of STAGES_FILE>
#   job.sh rest               dvc repro (evaluate stages and figures; train is up to date)
# DVC runs with --wait-for-lock: tasks share one checkout, and DVC holds the repository
# lock only while it reads and writes dvc.lock, so the stage commands themselves overlap.
set -euo pipefail

case "${1:-}" in
  prepare) cmd=(dvc --wait-for-lock repro prepare) ;;
  train)
    stage=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$2")
    [[ -n "$stage" ]] || { echo "error: no stage on line $((SLURM_ARRAY_TASK_ID + 1)) of $2" >&2; exit 2; }
    cmd=(dvc --wait-for-lock repro -s "$stage") ;;
  rest) cmd=(dvc --wait-for-lock repro) ;;
  *) echo "error: job.sh expects prepare, train STAGES_FILE or rest, got '${1:-}'" >&2; exit 2 ;;
esac

# Near the time limit Slurm sends USR1 (sbatch --signal=B:USR1@...): put the task back in
# the queue; when it starts again the train stage resumes from its last checkpoint.
requeue() {
  echo "time limit near: requeueing job ${SLURM_JOB_ID}" >&2
  scontrol requeue "${SLURM_JOB_ID}"
}
trap requeue USR1

echo "job ${SLURM_JOB_ID:-?} on $(hostname): ${cmd[*]} (in $PWD)"
"${cmd[@]}" &
pid=$!
# `wait` returns early when the trap fires; keep waiting for the stage itself.
until wait "$pid"; do
  status=$?
  kill -0 "$pid" 2>/dev/null || exit "$status"
done
if [[ "$1" == rest ]]; then
  dvc status
fi
