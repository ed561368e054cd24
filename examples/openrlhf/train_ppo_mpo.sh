#!/usr/bin/env bash
# PPO with OpenRLHF (>= 0.10.2 dotted flags) against `mpo serve` — the paper's essay-writing setup.
# Start the judge server and `mpo serve --config mpo-serve.yaml` first (see README.md next to this file).
set -euo pipefail

MPO_URL=${MPO_URL:-http://10.0.0.5:5000/get_reward}   # the full URL, path included
PROMPTS=${PROMPTS:-essay_train.jsonl}                  # JSONL {"prompt": "..."} (see README.md)
POLICY=${POLICY:-Qwen/Qwen2.5-1.5B-Instruct}

ray job submit --address="http://127.0.0.1:8265" \
  --runtime-env-json='{"working_dir": "/openrlhf"}' \
  -- python3 -m openrlhf.cli.train_ppo_ray \
  --ref.num_nodes 1 --ref.num_gpus_per_node 4 \
  --critic.num_nodes 1 --critic.num_gpus_per_node 4 \
  --actor.num_nodes 1 --actor.num_gpus_per_node 4 \
  --vllm.num_engines 4 --vllm.tensor_parallel_size 1 \
  --train.colocate_all --vllm.gpu_memory_utilization 0.5 \
  --vllm.enable_sleep --ds.enable_sleep \
  --actor.model_name_or_path "$POLICY" \
  --critic.model_name_or_path "$POLICY" \
  --reward.remote_url "$MPO_URL" \
  --data.prompt_dataset "$PROMPTS" \
  --data.input_key prompt \
  --data.apply_chat_template \
  --data.max_len 2048 \
  --rollout.max_new_tokens 1000 \
  --rollout.batch_size 64 \
  --rollout.n_samples_per_prompt 1 \
  --rollout.temperature 0.7 \
  --train.batch_size 64 \
  --train.micro_batch_size 2 \
  --rollout.micro_batch_size 4 \
  --train.max_epochs 4 \
  --train.num_episodes 1 \
  --actor.adam.lr 3e-6 \
  --critic.adam.lr 3e-6 \
  --algo.advantage.estimator gae \
  --algo.kl.init_coef 0.02 \
  --algo.kl.estimator k1 \
  --ds.zero_stage 2 \
  --ds.param_dtype bf16 \
  --actor.gradient_checkpointing_enable \
  --ckpt.output_dir runs/openrlhf-essay-mpo/policy \
  --ckpt.save_steps 10
