"""Chat models through an OpenAI-compatible ``/v1/chat/completions`` endpoint, grown by prefill: the tree's path is
the assistant's message, which the server continues (vLLM's and llama-server's ``continue_final_message``), after
the system message (``SamplingParams.system``) where one is given; what Tapestry Loom, MiniLoom and Helm do with
chat models. Everything else is the completions backend's (openai.py): the server's kind, every sampler stated,
the decoding lever recovered from the alternatives, bytes kept whole.

References: ``openai-chat:http://host:port/v1#MODEL`` (and ``?server=KIND``), as ``openai:``. The chat template
turns the path into the tokens the model reads, so it is part of the model: where the server shows it
(llama-server's ``/props``) its digest is recorded with every generation (``params.served.template``), and where
it does not, the record says so.
"""

from __future__ import annotations

import contextlib
import hashlib

import httpx

from ..errors import BackendError, Unsupported
from ..tree import Token
from . import served
from .base import Capabilities, SamplingParams
from .openai import OpenAIBackend


class OpenAIChatBackend(OpenAIBackend):
    name = "openai-chat"
    capabilities = Capabilities(streaming=True, logprobs=True, scoring=False, next_token=True, chat=True)
    endpoint = "/chat/completions"

    def __init__(self, model: str, **kwargs):
        super().__init__(model, **kwargs)
        self.template: dict | None = None

    async def _served_model(self) -> str:
        name = await super()._served_model()
        if self.template is None:
            self.template = await self._template()
        return name

    async def _template(self) -> dict:
        """The chat template's digest where the server shows its template (llama-server), else "not shown"."""
        if self.kind == "llama-server":
            root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
            with contextlib.suppress(httpx.HTTPError, ValueError, TypeError, AttributeError):
                text = (await self.client.get(root + "/props")).json().get("chat_template")
                if isinstance(text, str) and text:
                    return {"sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "from": "/props"}
        return {"sha256": None, "from": f"not shown by the {served.LABELS[self.kind or 'other']}"}

    @staticmethod
    def _messages(prefix: str, params: SamplingParams) -> list[dict]:
        return ([{"role": "system", "content": params.system}] if params.system else []) + \
            [{"role": "assistant", "content": prefix}]

    def _body(self, model: str, prefix: str, params: SamplingParams, n: int, seed: int | None) -> dict:
        body = super()._body(model, prefix, params, n, seed)
        del body["prompt"]
        asked = body.pop("logprobs")
        body.update(messages=self._messages(prefix, params), continue_final_message=True, add_generation_prompt=False,
                    logprobs=bool(asked), **({"top_logprobs": asked} if asked else {}))
        return body

    def _as_completion(self, choice: dict) -> dict:
        """A chat choice (a streamed ``delta``, or a whole ``message``) as a completions choice: its text, and its
        logprobs, which are already the ``content`` list that openai.py reads. A delta without content (the
        role, a reasoning part) carries no text."""
        part = choice.get("delta") or choice.get("message") or {}
        text = part.get("content") if isinstance(part, dict) else None
        return {**choice, "text": text if isinstance(text, str) else ""}

    def _served_record(self, params: SamplingParams, unknown: bool, got_logprobs: bool,
                       applied: dict | None = None) -> dict:
        return {**super()._served_record(params, unknown, got_logprobs, applied), "endpoint": self.endpoint,
                "template": self.template}

    async def score(self, prefix: str, continuation: str, top: int = 5) -> list[Token]:
        raise Unsupported(f"{self.ref}: a chat endpoint returns no logprobs for the messages it is given, so text "
                          "cannot be scored through it: score with the same server's completions endpoint "
                          "(openai:) or a local model")

    async def next_token(self, prefix: str, k: int = 20) -> list[tuple[str, float]]:
        model = await self._served_model()
        body = {"model": model, "messages": self._messages(prefix, SamplingParams(n=1)), "max_tokens": 1,
                "temperature": 0, "continue_final_message": True, "add_generation_prompt": False,
                "logprobs": True, "top_logprobs": min(k, 20)}
        data = await self._request("POST", self.endpoint, body)
        content = ((data.get("choices") or [{}])[0].get("logprobs") or {}).get("content") or []
        if not content:
            raise BackendError(f"the server at {self.base_url} returned no logprobs")
        tops = content[0].get("top_logprobs") or []
        return sorted(((str(t.get("token", "")), float(t["logprob"])) for t in tops if t.get("logprob") is not None),
                      key=lambda x: -x[1])[:k]
