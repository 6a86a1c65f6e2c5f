"""Standalone prompt router exported by `forgetless export vllm`: maps a prompt to a LoRA adapter name.

This file is copied as-is into an export directory next to `router.json` (encoder, tasks, threshold)
and `switch_head.safetensors` (the switch's MLP). It needs only torch, transformers and safetensors
(plus the standard library), never forgetless. It computes exactly what forgetless' Switch computes:
the same prompt features (MiniLM mean-pooled + L2-normalised, or a decoder's last-token / mean-pooled
hidden states with mask-derived position ids), the same MLP, and the same abstain rule (score below the
calibrated threshold -> the base model).

    python router.py route "What is the plural of goose?"     # prints {"adapter": "plural", ...}
    python router.py proxy --upstream http://127.0.0.1:8000 --port 8001

    from router import Router
    Router.load("router/").route(["What is the plural of goose?"])[0]["adapter"]   # None = base model

`proxy` puts the router in front of vLLM (or any OpenAI-compatible server): a request whose `model` is
`auto` (or missing) gets the routed adapter's name (or the base model's) and is forwarded; the answer
streams back unchanged with an `x-forgetless-adapter` header. Other models pass through untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

ROUTER_FORMAT = "forgetless-router"
ROUTED_PATHS = ("/v1/chat/completions", "/v1/completions")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    index = mask.shape[1] - 1 - mask.flip(1).long().argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0]), index]


class Router:
    """Prompt encoder + switch head + abstain threshold, loaded from an exported router directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.config = json.loads((self.directory / "router.json").read_text(encoding="utf-8"))
        if self.config.get("format") != ROUTER_FORMAT:
            raise ValueError(f"{self.directory}/router.json is not a {ROUTER_FORMAT} file")
        spec = self.config["encoder"]
        self.kind, self.max_length = spec["kind"], int(spec["max_length"])
        path = spec["path"]
        local = self.directory / path
        source = str(local) if local.exists() else path  # a copied encoder, or an HF id / absolute path
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source).eval().requires_grad_(False)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = spec.get("padding_side", "right" if self.kind == "minilm" else "left")
        self.head = self._load_head()
        self.tasks = sorted(self.config["tasks"], key=lambda t: t["id"])
        self.score_type, self.threshold = self.config["score"], self.config["threshold"]
        self.base_model = self.config.get("base_model")
        self._lock = threading.Lock()

    @classmethod
    def load(cls, directory: str | Path) -> Router:
        """Read an exported router directory."""
        return cls(directory)

    def _load_head(self) -> torch.nn.Sequential:
        head = self.config["head"]
        net = torch.nn.Sequential(
            torch.nn.Linear(head["in_dim"], head["hidden"]),
            torch.nn.ReLU(),
            torch.nn.Linear(head["hidden"], head["num_tasks"]),
        )
        net.load_state_dict(load_file(str(self.directory / "switch_head.safetensors")))
        return net.eval()

    def _accepts(self, argument: str) -> bool:
        return argument in inspect.signature(self.model.forward).parameters

    def encode(self, prompts: list[str], batch_size: int = 64) -> torch.Tensor:
        """One float32 feature vector per prompt, as the switch's encoder computes it."""
        chunks = []
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                batch = prompts[start : start + batch_size]
                enc = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                chunks.append(self._features(enc))
        return torch.cat(chunks) if chunks else torch.zeros((0, self.config["head"]["in_dim"]))

    def _features(self, enc) -> torch.Tensor:
        mask = enc["attention_mask"]
        if self.kind == "minilm":
            hidden = self.model(**enc).last_hidden_state.float()
            return torch.nn.functional.normalize(mean_pool(hidden, mask), dim=-1)
        kwargs = {"input_ids": enc["input_ids"], "attention_mask": mask}
        if self._accepts("position_ids"):
            kwargs["position_ids"] = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
        if self._accepts("logits_to_keep"):
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs, output_hidden_states=True, return_dict=True)
        hidden = getattr(out, "last_hidden_state", None)
        hidden = (hidden if hidden is not None else out.hidden_states[-1]).float()
        return last_token(hidden, mask) if self.kind == "last-token" else mean_pool(hidden, mask)

    def route(self, prompts: list[str]) -> list[dict]:
        """{task, adapter (None = base model), confidence, abstained, score} per prompt."""
        if not prompts:
            return []
        with self._lock, torch.no_grad():
            logits = self.head(self.encode(list(prompts)))
        confidence, ids = logits.softmax(dim=-1).max(dim=-1)
        scores = confidence if self.score_type == "max_softmax" else logits.logsumexp(dim=-1)
        routes = []
        for task_id, conf, score in zip(ids.tolist(), confidence.tolist(), scores.tolist(), strict=True):
            task = self.tasks[task_id]
            if self.threshold is not None and score < self.threshold:
                routes.append({"task": "__base__", "adapter": None, "confidence": conf, "abstained": True})
            else:
                routes.append(
                    {"task": task["name"], "adapter": task["adapter"], "confidence": conf, "abstained": False}
                )
            routes[-1]["score"] = score
        return routes


def routing_text(body: dict) -> str:
    """The text the switch sees: the last user message of a chat, or a completion's prompt."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"] or messages[-1:]
        content = users[-1].get("content", "") if isinstance(users[-1], dict) else ""
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)
    prompt = body.get("prompt", "")
    return str(prompt[0] if isinstance(prompt, list) and prompt else prompt)


def make_handler(router: Router, upstream: str, base_name: str):
    """An HTTP handler class that routes `model: auto` requests and forwards everything to `upstream`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._forward(None, {})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            extra: dict[str, str] = {}
            if self.path in ROUTED_PATHS:
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = None
                if isinstance(body, dict) and body.get("model") in (None, "auto"):
                    route = router.route([routing_text(body)])[0]
                    body["model"] = route["adapter"] or base_name
                    raw = json.dumps(body).encode()
                    extra = {"x-forgetless-adapter": route["adapter"] or "base"}
                    extra["x-forgetless-route-confidence"] = f"{route['confidence']:.4f}"
            self._forward(raw, extra)

        def _forward(self, raw: bytes | None, extra: dict[str, str]) -> None:
            headers = {
                k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization", "accept")
            }
            request = urllib.request.Request(upstream.rstrip("/") + self.path, data=raw, headers=headers)
            try:
                response = urllib.request.urlopen(request, timeout=600)
            except urllib.error.HTTPError as exc:
                response = exc
            except urllib.error.URLError as exc:
                self._reply(502, json.dumps({"error": {"message": f"upstream unreachable: {exc.reason}"}}).encode())
                return
            with response:
                self.send_response(response.status)
                skip = {"transfer-encoding", "connection", "content-length", "server", "date", *extra}
                for key, value in response.headers.items():
                    if key.lower() not in skip:
                        self.send_header(key, value)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Connection", "close")
                self.end_headers()
                while chunk := response.read1(65536):
                    self.wfile.write(chunk)
                    self.wfile.flush()

        def _reply(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def proxy_server(router: Router, upstream: str, host: str = "127.0.0.1", port: int = 8001, base_name: str = ""):
    """A threading HTTP server (not started) that routes and forwards to `upstream`."""
    handler = make_handler(router, upstream, base_name or router.base_model or "base")
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Route prompts to LoRA adapters (exported by forgetless).")
    parser.add_argument("--router", default=str(Path(__file__).resolve().parent), help="router directory")
    commands = parser.add_subparsers(dest="command", required=True)
    route = commands.add_parser("route", help="print the route of each prompt as JSON")
    route.add_argument("prompts", nargs="+")
    proxy = commands.add_parser("proxy", help="serve an OpenAI-compatible proxy that routes model 'auto'")
    proxy.add_argument("--upstream", default="http://127.0.0.1:8000", help="vLLM's base URL")
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=8001)
    proxy.add_argument("--base-name", default="", help="the base model's name upstream (default: router.json)")
    args = parser.parse_args(argv)
    router = Router.load(args.router)
    if args.command == "route":
        for prompt, result in zip(args.prompts, router.route(args.prompts), strict=True):
            print(json.dumps({"prompt": prompt, **result}))
        return
    server = proxy_server(router, args.upstream, args.host, args.port, args.base_name)
    print(f"routing proxy on http://{args.host}:{args.port} -> {args.upstream}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
