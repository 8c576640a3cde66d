#!/bin/bash

# Parameters
#SBATCH --account=lab
#SBATCH --array=0-24%4
#SBATCH --chdir='/SWEEP DIR/slurm'
#SBATCH --constraint=a100
#SBATCH --cpus-per-task=8
#SBATCH --gres=gpu:2
#SBATCH --job-name=exp-1234
#SBATCH --mail-type=END
#SBATCH --mem=32G
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --open-mode=append
#SBATCH --output='/SWEEP DIR/slurm/%A_%a_0_log.out'
#SBATCH --partition=gpu
#SBATCH --qos=normal
#SBATCH --signal=USR2@120
#SBATCH --time=90
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output '/SWEEP DIR/slurm/%A_%a_%t_log.out' PYTHON -u -m ptslurm.job.start -u -m submitit.core._submit '/SWEEP DIR/slurm'
