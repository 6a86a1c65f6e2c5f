"""Serve what forgetless trains behind an OpenAI-compatible API, and export it for vLLM.

    forgetless serve --run runs/continual            # model "auto" routes each prompt with the run's switch
    forgetless serve --adapter plural=runs/lora-plural --adapter numbers=runs/lora-numbers
    forgetless export vllm --run runs/continual --output export/

Modules: `schemas` (OpenAI request/response models), `registry` (served names, and the adapters of a
run directory as `forgetless.continual.run_dir` reads it), `batching` (bounded queue, dynamic batches,
stop strings), `backend` (HF/PEFT generation with adapters mixed per row, chunked prefill that stops when
its clients leave), `limits` (context, prompt-token and message limits, checked before queueing),
`formats` (OpenAI bodies and stream chunks), `metrics`, `app` (FastAPI),
`server` (uvicorn on loopback), and `vllm/`: `export` (a run as plain PEFT adapters + the `vllm serve`
command) and `router_template` (a standalone router module for a vLLM deployment).
"""
