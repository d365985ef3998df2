"""Triton's control plane over gRPC or HTTP: readiness, metadata, model config and ``/stats``.

Uses tritonclient's asyncio gRPC client (not on the hot path), so a user who
gives only the gRPC address gets everything. gRPC's JSON form omits zero fields
and writes int64 as strings: :func:`parse_model_stats` normalises that.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import grpc
import numpy.typing as npt
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http.aio as http_aio
from tritonclient.utils import InferenceServerException

from loadgen.errors import ConfigError, ServerUnavailable, UnknownModel
from loadgen.results import BatchStat, DurationStat, ModelStats, StatsSnapshot
from loadgen.tls import TlsSettings, tls_for_url
from loadgen.transports.addresses import GRPC_PORTS, HTTP_PORTS, grpc_target, split_host_port
from loadgen.transports.sniff import Speaks, sniff

CALL_TIMEOUT_S = 10.0
LOAD_TIMEOUT_S = 300.0
"""A model's (re)load: its instances' ``initialize`` may load weights for minutes."""
# gRPC's, OpenSSL's and aiohttp's words for a failed handshake (a wrong CA, a plain server, ...)
_TLS_FAILURE = re.compile(r"handshake|certificate|\[SSL|SSL_ERROR|wrong version number", re.IGNORECASE)
SNAPSHOT_TRIES = 5


def _duration(data: dict[str, Any] | None) -> DurationStat:
    data = data or {}
    return DurationStat(int(data.get("count", 0)), int(data.get("ns", 0)))


def parse_model_stats(entry: dict[str, Any]) -> ModelStats:
    """One ``model_stats`` entry (HTTP or gRPC JSON) as a :class:`ModelStats`."""
    inference = entry.get("inference_stats", {})
    batches = tuple(
        sorted(
            (
                BatchStat(
                    int(b.get("batch_size", 0)),
                    _duration(b.get("compute_input")),
                    _duration(b.get("compute_infer")),
                    _duration(b.get("compute_output")),
                )
                for b in entry.get("batch_stats", [])
            ),
            key=lambda b: b.batch_size,
        )
    )
    return ModelStats(
        inference_count=int(entry.get("inference_count", 0)),
        execution_count=int(entry.get("execution_count", 0)),
        success=_duration(inference.get("success")),
        fail=_duration(inference.get("fail")),
        queue=_duration(inference.get("queue")),
        compute_input=_duration(inference.get("compute_input")),
        compute_infer=_duration(inference.get("compute_infer")),
        compute_output=_duration(inference.get("compute_output")),
        cache_hit=_duration(inference.get("cache_hit")),
        cache_miss=_duration(inference.get("cache_miss")),
        batch_stats=batches,
    )


def _trace_values(data: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """gRPC's ``{"settings": {key: {"value": [...]}}}`` and HTTP's ``{key: value or [values]}`` alike."""
    if isinstance(data.get("settings"), dict):
        return {k: tuple(str(x) for x in v.get("value", [])) for k, v in data["settings"].items()}
    return {k: tuple(str(x) for x in (v if isinstance(v, list) else [v])) for k, v in data.items()}


def _is_unavailable(exc: InferenceServerException) -> bool:
    status = str(exc.status() or "")
    return any(code in status for code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"))


class ServerAPI:
    """Control-plane calls against one server; one-line errors for everything a user can get wrong.

    ``protocol`` picks tritonclient's asyncio gRPC or HTTP client; both return the same JSON.
    ``tls`` (or an ``https://`` URL) connects over TLS with the same settings as the transport.
    """

    def __init__(
        self,
        url: str,
        protocol: str = "grpc",
        headers: dict[str, str] | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        self.url = url
        self.protocol = protocol
        self._client: Any
        if protocol == "http":
            tls = tls_for_url(url, tls)
            host, port = split_host_port(url, HTTP_PORTS)
            self._client = http_aio.InferenceServerClient(
                f"{host}:{port}",
                conn_timeout=CALL_TIMEOUT_S,
                ssl=tls is not None,
                ssl_context=tls.ssl_context() if tls is not None else None,
            )
            self._json: dict[str, Any] = {}
        else:
            creds = tls.grpc_credentials() if tls is not None else None
            self._client = grpc_aio.InferenceServerClient(grpc_target(url), creds=creds)
            self._json = {"as_json": True}
        self._tls = tls is not None
        self._label = "gRPC" if protocol == "grpc" else "HTTP"
        if self._tls:
            self._label = "gRPC over TLS" if protocol == "grpc" else "HTTPS"
        if headers:  # gRPC metadata keys must be lower-case
            self._json["headers"] = {k.lower() if protocol != "http" else k: v for k, v in headers.items()}

    async def _call(self, what: str, coro: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        try:
            return await asyncio.wait_for(coro, timeout_s)
        except TimeoutError as exc:
            raise ServerUnavailable(
                f"Triton at {self.url} did not answer {what} within {timeout_s:g} s"
            ) from exc
        except InferenceServerException as exc:
            if _is_unavailable(exc):
                raise await self._unreachable(str(exc.message())) from exc
            raise
        except grpc.aio.AioRpcError as exc:
            raise await self._unreachable(str(exc.details())) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise await self._unreachable(str(exc)) from exc

    async def _unreachable(self, detail: str) -> ServerUnavailable:
        if self._tls and _TLS_FAILURE.search(detail):
            return ServerUnavailable(
                f"TLS handshake with Triton at {self.url} failed ({self._label}): {detail}"
            )
        wrong = await self._wrong_port()
        if wrong:
            return ServerUnavailable(f"cannot reach Triton at {self.url} ({self._label}): {wrong}")
        if "Bad status line" in detail:  # aiohttp quotes the bytes it could not read
            detail = "the server's answer is not HTTP/1.1"
        hint = ""
        if re.search(r"socket closed|server disconnected", detail, re.IGNORECASE):  # TLS (not) wanted
            hint = (
                "; the server closed the TLS connection: does it want a client certificate (--ssl-cert)?"
                if self._tls
                else "; if the server uses TLS, add --ssl"
            )
        return ServerUnavailable(f"cannot reach Triton at {self.url} ({self._label}): {detail}{hint}")

    async def _wrong_port(self) -> str:
        """What to do when the port speaks the other API's protocol ("" when it does not)."""
        if self._tls:
            return ""
        try:
            host, port = split_host_port(self.url, HTTP_PORTS if self.protocol == "http" else GRPC_PORTS)
        except ValueError:
            return ""
        speaks = await sniff(host, port)
        if self.protocol == "grpc" and speaks is Speaks.HTTP1:
            return (
                f"port {port} answers HTTP/1.1, as Triton's HTTP port does: add -i http, "
                f"or give the gRPC port (Triton's default {GRPC_PORTS['']})"
            )
        if self.protocol == "http" and speaks is Speaks.HTTP2:
            return (
                f"port {port} answers HTTP/2, as Triton's gRPC port does: drop -i http (gRPC is the "
                f"default), or give the HTTP port (Triton's default {HTTP_PORTS['']})"
            )
        if speaks is Speaks.TLS:
            return f"port {port} answers TLS: add --ssl (and --ssl-ca if its certificate is private)"
        return ""

    async def check_ready(self) -> None:
        live = await self._call("a liveness check", self._client.is_server_live())
        ready = await self._call("a readiness check", self._client.is_server_ready())
        if not (live and ready):
            raise ServerUnavailable(
                f"Triton at {self.url} is up but not ready (models still loading or failed)"
            )

    async def server_metadata(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "server metadata", self._client.get_server_metadata(**self._json)
        )
        return result

    async def model_names(self) -> list[str]:
        index = await self._call(
            "the repository index", self._client.get_model_repository_index(**self._json)
        )
        models = index.get("models", []) if isinstance(index, dict) else index  # HTTP answers a list
        return sorted({m["name"] for m in models})

    async def _model_call(self, model: str, version: str, what: str, coro: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self._call(what, coro)
        except InferenceServerException as exc:
            names = await self.model_names()
            shown = ", ".join(names) if names else "none"
            label = f"{model!r} version {version}" if version else repr(model)
            close = difflib.get_close_matches(model, names, n=3, cutoff=0.6)
            guess = "" if model in names or not close else f"did you mean {' or '.join(map(repr, close))}? "
            raise UnknownModel(
                f"model {label} is not available on {self.url} ({exc.message()}); "
                f"{guess}the server has: {shown}"
            ) from exc
        return result

    async def model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        return await self._model_call(
            model, version, "model metadata", self._client.get_model_metadata(model, version, **self._json)
        )

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        result = await self._model_call(
            model, version, "model config", self._client.get_model_config(model, version, **self._json)
        )
        config: dict[str, Any] = result.get("config", result)
        return config

    async def load_model(self, model: str, config: Mapping[str, Any] | None = None) -> None:
        """Load (or reload) through the repository API; ``config`` replaces the whole config.

        Refused by Triton unless it runs with ``--model-control-mode=explicit``; a config it
        refuses raises ``ConfigError`` with its words, and the model loaded before keeps serving."""
        extra = {} if config is None else {"config": json.dumps(config)}
        try:
            load = self._client.load_model(model, **extra, **self._headers())
            await self._call(f"loading {model!r}", load, LOAD_TIMEOUT_S)
        except InferenceServerException as exc:
            raise ConfigError(f"Triton at {self.url} did not load {model!r}: {exc.message()}") from None

    async def unload_model(self, model: str) -> None:
        try:
            unload = self._client.unload_model(model, **self._headers())
            await self._call(f"unloading {model!r}", unload, LOAD_TIMEOUT_S)
        except InferenceServerException as exc:
            raise ConfigError(f"Triton at {self.url} did not unload {model!r}: {exc.message()}") from None

    async def infer(
        self, model: str, arrays: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, npt.NDArray[Any]]:
        """One request through the control plane's client: for checks that send a handful
        (``model add --validate``), never for load."""
        from tritonclient.utils import np_to_triton_dtype

        module = http_aio if self.protocol == "http" else grpc_aio
        tensors = []
        for name, array in arrays.items():
            tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        wanted = [module.InferRequestedOutput(name) for name in outputs]
        request = self._client.infer(model, tensors, outputs=wanted, **self._headers())
        try:
            result = await self._call(f"a request to {model!r}", request)
        except InferenceServerException as exc:
            raise ConfigError(f"{model!r} on {self.url} failed a request: {exc.message()}") from None
        return {name: result.as_numpy(name) for name in outputs}

    async def model_stats(self, model: str, version: str = "") -> ModelStats:
        """The model's cumulative statistics, summed over the versions the server reports.

        Triton updates ``execution_count`` and ``batch_stats`` separately, so a snapshot
        taken while an execution completes can disagree with itself by one; such a
        snapshot is taken again (a few times at most) so step deltas add up exactly.
        """
        for _ in range(SNAPSHOT_TRIES):
            stats = await self._model_stats_once(model, version)
            if stats.is_consistent():
                break
        return stats

    async def stats_snapshot(self, model: str, version: str, composing: Sequence[str]) -> StatsSnapshot:
        """The model's statistics and those of its ``composing`` models, asked for together."""
        top, *parts = await asyncio.gather(
            self.model_stats(model, version),
            *(self.model_stats(name) for name in composing),
            return_exceptions=True,
        )
        if isinstance(top, BaseException):
            raise top
        for part in parts:  # an unavailable composing model leaves only itself out
            if isinstance(part, BaseException) and not isinstance(part, UnknownModel):
                raise part
        found = {
            name: part for name, part in zip(composing, parts, strict=True) if isinstance(part, ModelStats)
        }
        return StatsSnapshot(top, found)

    async def _model_stats_once(self, model: str, version: str) -> ModelStats:
        data = await self._model_call(
            model,
            version,
            "model statistics",
            self._client.get_inference_statistics(model, version, **self._json),
        )
        entries = [parse_model_stats(e) for e in data.get("model_stats", [])]
        total = parse_model_stats({})
        for entry in entries:  # several ready versions: counters add
            total = total + entry
        return total

    async def register_system_memory(self, region: str, key: str, byte_size: int) -> None:
        """Register a POSIX shared-memory region (``key``: its ``/name``) under ``region``;
        :class:`ConfigError` in one line when the server refuses it (another host, no access)."""
        try:
            await self._call(
                "a shared-memory registration",
                self._client.register_system_shared_memory(region, key, byte_size, **self._headers()),
            )
        except InferenceServerException as exc:
            raise ConfigError(
                f"Triton at {self.url} refused the system shared-memory region {region!r}: "
                f"{' '.join(str(exc.message()).split())} (--shared-memory system needs the server on "
                "this machine, sharing its /dev/shm)"
            ) from None

    async def unregister_system_memory(self, region: str) -> None:
        await self._call(
            "a shared-memory unregistration",
            self._client.unregister_system_shared_memory(region, **self._headers()),
        )

    async def system_memory_regions(self) -> list[str]:
        """The names of the system shared-memory regions the server holds."""
        status = await self._call(
            "the shared-memory status", self._client.get_system_shared_memory_status(**self._json)
        )
        regions = status.get("regions", status) if isinstance(status, dict) else status
        return sorted(r["name"] for r in (regions.values() if isinstance(regions, dict) else regions))

    async def trace_settings(self, model: str | None) -> dict[str, tuple[str, ...]]:
        """A model's trace settings (the server's with ``model`` None), each as a tuple of values."""
        try:
            data = await self._call(
                "the trace settings", self._client.get_trace_settings(model_name=model, **self._json)
            )
        except InferenceServerException as exc:
            raise ConfigError(
                f"Triton at {self.url} gave no trace settings for {model or 'the server'}: "
                f"{' '.join(str(exc.message()).split())}"
            ) from None
        return _trace_values(data)

    async def update_trace_settings(self, model: str, settings: Mapping[str, Any]) -> None:
        """Change a model's trace settings (a None value clears it: the server's applies again)."""
        try:
            await self._call(
                "a trace settings change",
                self._client.update_trace_settings(
                    model_name=model, settings=dict(settings), **self._headers()
                ),
            )
        except InferenceServerException as exc:
            raise ConfigError(
                f"Triton at {self.url} refused trace settings {settings} for {model!r}: "
                f"{' '.join(str(exc.message()).split())}"
            ) from None

    def _headers(self) -> dict[str, Any]:
        return {"headers": self._json["headers"]} if "headers" in self._json else {}

    async def close(self) -> None:
        await self._client.close()
