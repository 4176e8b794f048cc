"""Microsoft 365 / Entra ID over Microsoft Graph (msgraph-sdk): find a user, read, reset, enable, revoke.

msgraph-sdk, kiota and azure-identity are imported here only, and only when a connection
opens: they are heavy (see the closing note of issue 4), and a WinRM fix never pays for them.
The SDK is async: each connection owns one event loop, run in its own thread, where the
client is created, used and closed. Callers stay synchronous, whether or not their own
thread runs an event loop.

Safe by default: HTTPS with the certificate checked (`graph.ca_bundle`, else the system
store), the token sent to the configured Graph host only, redirects never followed.
Throttling (429) and unavailability (503, 504) are retried by the SDK's retry handler,
honouring Retry-After up to `graph.max_retry_after_s`; what is still refused after
`graph.max_retries` is reported. Graph's errors become one line chosen by HTTP status and
Graph's error code. No message ever holds the client secret, a token or a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from l1fix.config import resolve_secret
from l1fix.errors import (
    AuthRefused,
    BadInput,
    InsufficientRights,
    L1fixError,
    PasswordRejected,
    Refused,
    RemoteError,
    Throttled,
    Timeout,
    TlsFailure,
    UnknownTarget,
    Unreachable,
)
from l1fix.secrets import Secret, redact

if TYPE_CHECKING:
    from l1fix.config import Config, GraphSettings
    from l1fix.targets.base import Target

T = TypeVar("T")

USER_FIELDS = [
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "accountEnabled",
    "lastPasswordChangeDateTime",
    "passwordPolicies",
    "passwordProfile",
    "onPremisesSyncEnabled",
    "signInSessionsValidFromDateTime",
    "userType",
]
CANDIDATES_SHOWN = 8
AUTH_RECORD = "graph-auth-record.json"  # device-code: who signed in (no token in it), in the l1fix home
MICROSOFT_AUTHORITIES = {
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
}
# Directory roles that carry no administrative power over users: a Helpdesk Administrator
# may still reset such accounts (Entra's "Who can reset passwords"). Every other role, and
# any role l1fix does not know, makes an account privileged: it is for L2.
UNPRIVILEGED_ROLES = {
    "88d8e3e3-8f55-4a1e-953a-9b9898b8876b": "Directory Readers",
    "95e79109-95c0-4d8e-aee3-d01accf2d47b": "Guest Inviter",
    "790c1fb9-7f7d-4f88-86a1-ef1f95c05c1b": "Message Center Reader",
    "4a5d8f65-41da-4de4-8968-e035b65339cf": "Reports Reader",
    "75934031-6c7e-415a-99d7-48dbd49e875e": "Usage Summary Reports Reader",
}
_GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def open_connection(target: Target, config: Config) -> Graph:
    return Graph.open(config.graph, target=target.name, home=config.home)


def odata_string(value: str) -> str:
    """`value` as an OData string literal: quoted, a `'` doubled (the SDK does not escape $filter values)."""
    return "'" + value.replace("'", "''") + "'"


# -- what is read ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """An Entra directory role the user holds (directly or through a role-assignable group)."""

    name: str
    template_id: str

    @property
    def privileged(self) -> bool:
        return self.template_id.lower() not in UNPRIVILEGED_ROLES


@dataclass(frozen=True)
class M365User:
    """One Entra ID user as Graph returned it, and what it means."""

    id: str
    upn: str
    mail: str | None
    display_name: str | None
    enabled: bool
    last_password_change: str | None  # ISO 8601
    password_policies: str | None
    must_change: bool | None  # passwordProfile.forceChangePasswordNextSignIn, when Graph returns it
    synced: bool  # onPremisesSyncEnabled: mastered in on-premises AD
    sessions_valid_from: str | None  # signInSessionsValidFromDateTime
    user_type: str | None
    roles: tuple[Role, ...] | None  # None: they could not be read
    sign_in: dict[str, str | None] | None = None
    sign_in_note: str | None = None

    @property
    def privileged_by(self) -> tuple[str, ...]:
        """Why the account counts as privileged; unreadable roles count too (fail closed)."""
        if self.roles is None:
            return ("its directory roles could not be read",)
        return tuple(f"holds the {r.name} role" for r in self.roles if r.privileged)

    @property
    def privileged(self) -> bool:
        return bool(self.privileged_by)

    def state(self) -> dict[str, Any]:
        """JSON-safe state for the journal (no secret in it)."""
        return {
            "id": self.id,
            "user_principal_name": self.upn,
            "mail": self.mail,
            "display_name": self.display_name,
            "user_type": self.user_type,
            "enabled": self.enabled,
            "last_password_change": self.last_password_change,
            "must_change_password": self.must_change,
            "password_policies": self.password_policies,
            "synced_from_ad": self.synced,
            "sessions_valid_from": self.sessions_valid_from,
            "roles": None if self.roles is None else [r.name for r in self.roles],
            "privileged": self.privileged,
            "privileged_because": list(self.privileged_by),
            "sign_in_activity": self.sign_in,
            **({"sign_in_activity_note": self.sign_in_note} if self.sign_in_note else {}),
        }

    def summary(self) -> str:
        who = f"{self.upn} ({self.display_name})" if self.display_name else self.upn
        parts = ["enabled" if self.enabled else "DISABLED"]
        if self.must_change:
            parts.append("must change password at next sign-in")
        parts.append(f"password set {_short(self.last_password_change)}")
        if self.sign_in is not None:
            parts.append(f"last sign-in {_short(self.sign_in.get('last_sign_in'))}")
        if self.synced:
            parts.append("synchronized from on-premises AD")
        if self.privileged:
            parts.append(f"privileged ({'; '.join(self.privileged_by)})")
        return f"{who}: " + ", ".join(parts)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _short(text: str | None) -> str:
    return f"{text[:16].replace('T', ' ')} UTC" if text else "never"


# -- the connection -------------------------------------------------------------------------


class Graph:
    """Microsoft Graph for one run: an SDK client living in its own event-loop thread."""

    def __init__(self, settings: GraphSettings, *, target: str, home: Path) -> None:
        self.settings = settings
        self.target = target
        self.home = home
        self.host = urlsplit(settings.base_url).hostname or ""
        self.identity = {
            "app": f"the l1fix app ({settings.client_id})",
            "device-code": "your account",
            "token": "the configured access token",
        }[settings.auth]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="l1fix-graph", daemon=True)
        self._client: Any = None
        self._http: Any = None
        self._credential: Any = None
        self._roles: dict[str, tuple[Role, ...] | None] = {}
        self._users: dict[str, M365User] = {}

    def __repr__(self) -> str:
        return f"Graph({self.settings.base_url}, auth={self.settings.auth})"

    @classmethod
    def open(cls, settings: GraphSettings, *, target: str, home: Path) -> Graph:
        """Check the settings, resolve the credential, create the client in its loop. Raises L1fixError."""
        _require_sdk()
        secret = _credential_for(settings, target)
        graph = cls(settings, target=target, home=home)
        graph._thread.start()
        try:
            if settings.auth != "token":  # here, not in the loop: a device-code sign-in waits, Ctrl-C must work
                graph._credential = graph._mapped_sync(graph._make_credential, secret)
            graph._run(graph._build(secret), doing="sign in to", account="Microsoft Graph")
        except BaseException:
            graph.close()
            raise
        return graph

    def close(self) -> None:
        """Close the HTTP client and the credential in their loop, then stop the loop."""
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._aclose(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    # -- reading ---------------------------------------------------------------------------

    def find_user(self, name: str, *, sign_in: bool = False) -> M365User:
        """The one user whose UPN or mail is `name` (or whose object id it is); else BadInput with candidates."""
        wanted = name.strip()
        if not wanted or any(ord(c) < 32 for c in wanted):
            raise BadInput(f"{name!r} is not a Microsoft 365 user name", target=self.target)
        return self._run(self._find(wanted, sign_in), doing="look up", account=wanted)

    def read(self, user_id: str) -> M365User:
        """The user read again (after a change); its roles as read earlier in this run."""
        return self._run(self._read(user_id), doing="read", account=user_id)

    def known(self, user_id: str) -> M365User:
        """The user as last read in this run (no request), else read now."""
        return self._users.get(user_id) or self.read(user_id)

    # -- changing --------------------------------------------------------------------------

    def reset_password(self, user: M365User, password: Secret, *, must_change: bool) -> None:
        """PATCH passwordProfile {forceChangePasswordNextSignIn, password}."""
        self._run(self._reset(user.id, password, must_change), doing="reset the password of", account=user.upn)

    def enable(self, user: M365User) -> None:
        """PATCH accountEnabled = true."""
        self._run(self._patch(user.id, accountEnabled=True), doing="enable", account=user.upn)

    def revoke_sessions(self, user: M365User) -> bool:
        """POST revokeSignInSessions: every refresh token and session cookie becomes invalid."""
        return self._run(self._revoke(user.id), doing="revoke the sessions of", account=user.upn)

    # -- the loop --------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], *, doing: str, account: str = "") -> T:
        future = asyncio.run_coroutine_threadsafe(self._mapped(coro, doing, account), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C: the request stops too
            raise

    # The mapped error is raised outside the except block: it then has no __context__, so nothing
    # reachable from a run's result (an httpx request holds the bearer token) survives the call.

    def _mapped_sync(self, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except L1fixError:
            raise
        except Exception as exc:  # noqa: BLE001 - credential errors become one line too
            error = self._error(exc, "sign in to", "Microsoft Graph")
        raise error

    async def _mapped(self, coro: Coroutine[Any, Any, T], doing: str, account: str) -> T:
        try:
            return await coro
        except L1fixError:
            raise
        except Exception as exc:  # noqa: BLE001 - every SDK, HTTP and credential error becomes one line
            error = self._error(exc, doing, account)
        raise error

    async def _build(self, secret: Secret | None) -> None:
        import httpx
        from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider
        from kiota_http.kiota_client_factory import KiotaClientFactory
        from kiota_http.middleware import RetryHandler
        from kiota_http.middleware.options import RedirectHandlerOption, RetryHandlerOption
        from msgraph import GraphRequestAdapter, GraphServiceClient
        from msgraph.graph_request_adapter import options as sdk_options
        from msgraph_core import GraphClientFactory
        from msgraph_core.middleware import GraphTelemetryHandler
        from msgraph_core.middleware.options import GraphTelemetryHandlerOption

        _import_request_builders()
        s = self.settings
        options = dict(sdk_options)
        retry = RetryHandlerOption(max_retries=s.max_retries)
        options[RetryHandlerOption.get_key()] = retry
        options[RedirectHandlerOption.get_key()] = RedirectHandlerOption(should_redirect=False)
        middleware = [
            _capped_retry_handler(RetryHandler, retry, s.max_retry_after_s) if isinstance(m, RetryHandler) else m
            for m in KiotaClientFactory.get_default_middleware(options)
        ]
        middleware.append(GraphTelemetryHandler(options=options[GraphTelemetryHandlerOption.get_key()]))
        http = httpx.AsyncClient(
            base_url=s.base_url, timeout=httpx.Timeout(s.timeout_s), verify=_tls_context(s), follow_redirects=False
        )
        self._http = GraphClientFactory.create_with_custom_middleware(middleware, client=http)
        if s.auth == "token":
            assert secret is not None
            auth: Any = BaseBearerTokenAuthenticationProvider(_StaticToken(secret, self.host))
        else:
            from kiota_authentication_azure.azure_identity_authentication_provider import (
                AzureIdentityAuthenticationProvider,
            )

            auth = AzureIdentityAuthenticationProvider(
                self._credential, scopes=[f"https://{self.host}/.default"], allowed_hosts=[self.host]
            )
        adapter = GraphRequestAdapter(auth, client=self._http)
        adapter.base_url = s.base_url
        self._client = GraphServiceClient(request_adapter=adapter)

    def _make_credential(self, secret: Secret | None) -> Any:
        """azure-identity's credential for app-only (secret or certificate) or device-code sign-in."""
        s = self.settings
        common: dict[str, Any] = {"authority": s.authority}
        if (urlsplit(s.authority).hostname or "") not in MICROSOFT_AUTHORITIES:
            common["disable_instance_discovery"] = True  # else MSAL asks login.microsoftonline.com about it
        if s.ca_bundle:
            common["connection_verify"] = str(s.ca_bundle)
        if s.auth == "app":
            from azure.identity import CertificateCredential, ClientSecretCredential

            if s.certificate_path:
                password = secret.reveal().encode() if secret else None
                try:
                    return CertificateCredential(
                        s.tenant_id, s.client_id, certificate_path=str(s.certificate_path), password=password, **common
                    )
                except (ValueError, TypeError):
                    raise BadInput(
                        f"graph.certificate_path {s.certificate_path} could not be loaded",
                        target=self.target,
                        hint="a PEM file with the private key and the certificate, or PKCS#12; "
                        "check graph.certificate_password",
                    ) from None
            assert secret is not None
            return ClientSecretCredential(s.tenant_id, s.client_id, secret.reveal(), **common)
        return self._device_code_credential(common)

    def _device_code_credential(self, common: dict[str, Any]) -> Any:
        """The technician signs in once (device code); the sign-in is kept in the OS keychain when it can be."""
        from azure.identity import AuthenticationRecord, DeviceCodeCredential, TokenCachePersistenceOptions

        s = self.settings
        record_path = self.home / AUTH_RECORD
        made_for = {"tenant_id": s.tenant_id, "client_id": s.client_id, "authority": s.authority}
        record = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            saved = json.loads(record_path.read_text(encoding="utf-8"))
            if saved["for"] == made_for:  # a sign-in for another tenant or app is not reused
                record = AuthenticationRecord.deserialize(saved["record"])
        kwargs: dict[str, Any] = {
            "tenant_id": s.tenant_id,
            "prompt_callback": _show_device_code,
            "timeout": 300,
            **common,
        }
        scopes = [f"https://{self.host}/.default"]
        persistent = s.token_cache
        if persistent:
            kwargs["cache_persistence_options"] = TokenCachePersistenceOptions(name="l1fix-graph")
        if record is not None:
            kwargs.pop("authority")  # the record names it (azure-identity refuses both)
        credential = DeviceCodeCredential(s.client_id, authentication_record=record, **kwargs)
        try:
            # CAE on, as kiota asks for it: azure-identity caches CAE tokens apart from the others
            if record is None or not persistent:
                record = credential.authenticate(scopes=scopes, enable_cae=True)
            else:  # silently from the keychain (or a new sign-in), here where Ctrl-C works
                credential.get_token(*scopes, enable_cae=True)
        except Exception as exc:
            if not persistent or not _no_keychain(exc):
                raise
            print(
                "l1fix: no OS keychain to keep the Microsoft 365 sign-in (libsecret, Keychain or DPAPI): you will "
                "sign in again next time; graph.token_cache = false silences this",
                file=sys.stderr,
            )
            kwargs.pop("cache_persistence_options")
            kwargs["authority"] = common["authority"]
            persistent = False
            credential = DeviceCodeCredential(s.client_id, **kwargs)
            record = credential.authenticate(scopes=scopes, enable_cae=True)
        if persistent:
            _write_private(record_path, json.dumps({"for": made_for, "record": record.serialize()}))
        if record.username:
            self.identity = f"your account ({record.username})"
        return credential

    async def _aclose(self) -> None:
        if self._http is not None:
            # msgraph-core's AsyncGraphTransport does not pass aclose() on (kiota-python#494 fixed it
            # for AsyncKiotaTransport only): close the wrapped connection pool ourselves.
            inner = getattr(self._http._transport, "transport", None)
            await self._http.aclose()
            if inner is not None:
                await inner.aclose()
        if self._credential is not None:
            with contextlib.suppress(Exception):
                self._credential.close()

    # -- the requests ----------------------------------------------------------------------

    async def _find(self, name: str, sign_in: bool) -> M365User:
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder

        if _GUID.fullmatch(name):
            return await self._read(name, sign_in=sign_in, account=name)
        value = odata_string(name)
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            filter=f"userPrincipalName eq {value} or mail eq {value}", select=USER_FIELDS, top=10
        )
        page = await self._get(self._client.users, _UserPage, query)
        found = list(page.value or []) if page else []
        if len(found) > 1:
            names = ", ".join(sorted(_describe(u) for u in found))
            raise BadInput(
                f"{name!r} matches {len(found)} Microsoft 365 users: {names}",
                target=self.target,
                hint="give the exact user principal name",
            )
        if not found:
            candidates = await self._candidates(name)
            hint = f"did you mean: {', '.join(candidates)}?" if candidates else "check the spelling, or give the UPN"
            raise UnknownTarget(
                f"no Microsoft 365 user {name!r} (user principal name or mail)", target=self.target, hint=hint
            )
        user = found[0]
        return await self._complete(user, sign_in)

    async def _read(self, user_id: str, *, sign_in: bool = False, account: str | None = None) -> M365User:
        from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=USER_FIELDS)
        try:
            user = await self._get(self._client.users.by_user_id(user_id), _UserView, query)
        except Exception as exc:
            if _status(exc) == 404:
                raise UnknownTarget(f"no Microsoft 365 user {account or user_id!r}", target=self.target) from None
            raise
        if user is None:
            raise RemoteError(f"Microsoft Graph returned no user for {user_id}", target=self.target)
        return await self._complete(user, sign_in)

    async def _complete(self, user: Any, sign_in: bool) -> M365User:
        """The user's roles (read once a run) and, when asked, its sign-in activity, concurrently."""
        if user.id not in self._roles:
            if sign_in:
                roles, (activity, note) = await asyncio.gather(self._read_roles(user.id), self._sign_in(user.id))
            else:
                roles, (activity, note) = await self._read_roles(user.id), (None, None)
            self._roles[user.id] = roles
        elif sign_in:
            activity, note = await self._sign_in(user.id)
        else:
            activity, note = None, None
        profile = user.password_profile
        found = M365User(
            id=user.id,
            upn=user.user_principal_name or "",
            mail=user.mail,
            display_name=user.display_name,
            enabled=bool(user.account_enabled),
            last_password_change=_iso(user.last_password_change_date_time),
            password_policies=user.password_policies,
            must_change=profile.force_change_password_next_sign_in if profile is not None else None,
            synced=bool(user.on_premises_sync_enabled),
            sessions_valid_from=_iso(user.sign_in_sessions_valid_from_date_time),
            user_type=user.user_type,
            roles=self._roles[user.id],
            sign_in=activity,
            sign_in_note=note,
        )
        self._users[found.id] = found
        return found

    async def _read_roles(self, user_id: str) -> tuple[Role, ...] | None:
        """Directory roles held directly or through groups (transitiveMemberOf); None if not readable."""
        from msgraph.generated.users.item.transitive_member_of.graph_directory_role.graph_directory_role_request_builder import (  # noqa: E501
            GraphDirectoryRoleRequestBuilder,
        )

        builder = self._client.users.by_user_id(user_id).transitive_member_of.graph_directory_role
        query = GraphDirectoryRoleRequestBuilder.GraphDirectoryRoleRequestBuilderGetQueryParameters(
            select=["id", "displayName", "roleTemplateId"]
        )
        roles: list[Role] = []
        try:
            page = await self._get(builder, _RolePage, query)
            while page is not None:
                roles.extend(Role(r.display_name or "?", r.role_template_id or "") for r in page.value or [])
                if not page.odata_next_link:
                    break
                page = await self._get(builder.with_url(page.odata_next_link), _RolePage)
        except Exception as exc:
            if _status(exc) in (403, 401):
                return None  # fail closed: the account then counts as privileged
            raise
        return tuple(sorted(set(roles), key=lambda r: r.name))

    async def _sign_in(self, user_id: str) -> tuple[dict[str, str | None] | None, str | None]:
        """signInActivity: needs AuditLog.Read.All and an Entra ID P1/P2 licence; (None, why) otherwise."""
        from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=["id", "signInActivity"])
        try:
            user = await self._get(self._client.users.by_user_id(user_id), _UserView, query)
        except Exception as exc:
            if _status(exc) in (400, 403):
                code, _ = _graph_error(exc)
                return None, f"not readable ({code or _status(exc)}): needs AuditLog.Read.All and Entra ID P1"
            raise
        activity = user.sign_in_activity if user is not None else None
        if activity is None:
            return None, "Graph returned no sign-in activity"
        return {
            "last_sign_in": _iso(activity.last_sign_in_date_time),
            "last_non_interactive_sign_in": _iso(activity.last_non_interactive_sign_in_date_time),
            "last_successful_sign_in": _iso(activity.last_successful_sign_in_date_time),
        }, None

    async def _candidates(self, name: str) -> list[str]:
        """Users whose UPN, mail or display name starts like `name`, for the hint."""
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder

        local = name.split("@", 1)[0]
        seen: list[str] = []
        for probe in dict.fromkeys([local, local[:3]]):
            if len(probe) < 2:
                continue
            v = odata_string(probe)
            query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                filter=f"startswith(userPrincipalName,{v}) or startswith(mail,{v}) or startswith(displayName,{v})",
                select=["userPrincipalName", "displayName"],
                top=CANDIDATES_SHOWN,
            )
            try:
                page = await self._get(self._client.users, _UserPage, query)
            except Exception:  # noqa: BLE001 - hints are best effort
                return seen
            for user in page.value or [] if page else []:
                text = _describe(user)
                if text not in seen:
                    seen.append(text)
            if seen:
                break
        return sorted(seen)[:CANDIDATES_SHOWN]

    async def _reset(self, user_id: str, password: Secret, must_change: bool) -> None:
        profile = _Body(forceChangePasswordNextSignIn=must_change, password=password.reveal())
        try:
            await self._patch(user_id, passwordProfile=profile)
        finally:
            profile.values.clear()

    async def _patch(self, user_id: str, **changes: Any) -> None:
        info = self._client.users.by_user_id(user_id).to_patch_request_information(_Body(**changes))
        await self._client.request_adapter.send_no_response_content_async(info, self._errors())

    async def _revoke(self, user_id: str) -> bool:
        info = self._client.users.by_user_id(user_id).revoke_sign_in_sessions.to_post_request_information()
        answer = await self._client.request_adapter.send_async(info, _BoolAnswer, self._errors())
        return bool(answer is not None and answer.value)

    async def _get(self, builder: Any, view: type[T], query: Any = None) -> T:
        """GET through the SDK's request builder and adapter, parsed into l1fix's own small view."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        config = RequestConfiguration(query_parameters=query) if query is not None else None
        info = builder.to_get_request_information(config)
        return await self._client.request_adapter.send_async(info, view, self._errors())

    @staticmethod
    def _errors() -> dict[str, Any]:
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        return {"XXX": ODataError}

    # -- errors ----------------------------------------------------------------------------

    def _error(self, exc: BaseException, doing: str, account: str) -> L1fixError:
        """One line a technician can act on; never a secret, a token or a password."""
        status = _status(exc)
        if status is not None:
            return self._http_error(exc, status, doing, account)
        name = type(exc).__name__
        text = redact(str(exc))
        module = type(exc).__module__
        if module.startswith("azure.") or name in ("ClientAuthenticationError", "CredentialUnavailableError"):
            return self._sign_in_error(exc, text)
        if name == "HTTPError" and "https" in text:  # kiota's azure provider: a token only over https
            return BadInput(f"graph.base_url {self.settings.base_url}: {text}", target=self.target)
        where = self.settings.base_url
        if _is_tls_failure(exc):
            return TlsFailure(
                f"the TLS certificate of {where} could not be validated",
                target=self.target,
                hint="check graph.ca_bundle (a TLS-inspecting proxy needs its CA there)",
            )
        if "Timeout" in name:
            return Timeout(f"{where} did not answer within {self.settings.timeout_s:g} s", target=self.target)
        if name in ("ConnectError", "ConnectTimeout", "RemoteProtocolError", "ReadError", "WriteError") or isinstance(
            exc, OSError
        ):
            return Unreachable(f"cannot reach {where} ({name})", target=self.target, hint="check graph.base_url")
        return RemoteError(f"Microsoft Graph: could not {doing} {account} ({name})", target=self.target)

    def _http_error(self, exc: BaseException, status: int, doing: str, account: str) -> L1fixError:
        code, message = _graph_error(exc)
        said = f"Graph said: {code}: {message}" if message else (f"Graph said: {code}" if code else None)
        lowered = f"{code} {message}".lower()
        if status == 401:
            return AuthRefused(
                f"Microsoft Graph refused {self.identity}: {code or 'unauthorized'}",
                target=self.target,
                hint="check graph.tenant_id, client_id and the credential in config.toml",
            )
        if status == 403:
            return InsufficientRights(
                f"{self.identity} lacks the permission or the directory role to {doing} {account}",
                target=self.target,
                hint=(
                    "a Helpdesk Administrator cannot reset or re-enable administrators; an app needs "
                    "User.ReadWrite.All and at least the User Administrator role; else escalate to L2"
                    + (f" ({said})" if said else "")
                ),
            )
        if status == 400 and "password" in lowered and ("complexity" in lowered or "passwordpolicy" in lowered):
            return PasswordRejected(
                f"the new password for {account} does not meet Entra ID's password policy "
                "(length, complexity, a banned or a recent password)",
                target=self.target,
                hint=said,
            )
        if status == 400 and "on-premises" in lowered:
            return Refused(
                f"{account} is synchronized from on-premises Active Directory: Entra ID cannot {doing} it",
                target=self.target,
                hint="do it in AD (l1fix ad-password-reset, ad-enable); the sync carries it to Microsoft 365",
            )
        if status == 404:
            return UnknownTarget(f"no Microsoft 365 user {account!r} ({code or 'not found'})", target=self.target)
        if status in (429, 503, 504):
            return self._throttled(exc, status, account, doing)
        if status >= 500:
            return Unreachable(
                f"Microsoft Graph failed to {doing} {account}: {status} {code or ''}".rstrip(),
                target=self.target,
                hint="try again in a few minutes",
            )
        return RemoteError(
            f"Microsoft Graph refused to {doing} {account}: {status} {code or ''}".rstrip(),
            target=self.target,
            hint=said,
        )

    def _throttled(self, exc: BaseException, status: int, account: str, doing: str) -> L1fixError:
        headers = {k.lower(): v for k, v in (getattr(exc, "response_headers", None) or {}).items()}
        wait = headers.get("retry-after")
        seconds = float(wait) if wait and wait.strip().isdigit() else None
        what = "throttling l1fix (429 Too Many Requests)" if status == 429 else f"unavailable ({status})"
        if seconds is not None and seconds > self.settings.max_retry_after_s:
            cap = self.settings.max_retry_after_s
            why = f"it asks to wait {seconds:g} s, more than graph.max_retry_after_s ({cap:g})"
        else:
            why = f"still refused after {self.settings.max_retries} retries"
        return Throttled(
            f"Microsoft Graph is {what}: could not {doing} {account}, {why}",
            target=self.target,
            hint=f"try again in {seconds:g} s" if seconds else "try again in a few minutes",
        )

    def _sign_in_error(self, exc: BaseException, text: str) -> L1fixError:
        authority = self.settings.authority
        codes = {
            "AADSTS7000215": "the client secret is wrong",
            "AADSTS7000222": "the client secret has expired",
            "AADSTS700016": "the application (client_id) is unknown in this tenant",
            "AADSTS90002": "the tenant is unknown",
            "AADSTS900023": "the tenant id is malformed",
            "AADSTS700027": "the certificate is not registered on the application",
            "AADSTS50126": "wrong user name or password",
            "AADSTS70016": "the device-code sign-in is still pending",
            "AADSTS70020": "the device code expired before the sign-in",
            "AADSTS50076": "multi-factor authentication is required",
        }
        found = re.search(r"\bAADSTS\d+\b", text)
        if found:
            reason = codes.get(found.group(0), _first_sentence(text[found.start() :]))
            return AuthRefused(
                f"the sign-in to Microsoft 365 as {self.identity} failed: {reason} ({found.group(0)})",
                target=self.target,
                hint="check graph.tenant_id, client_id and the credential in config.toml",
            )
        if "ServiceRequestError" in type(exc).__name__ or "connection" in text.lower():
            if "certificate" in text.lower() or "ssl" in text.lower():
                return TlsFailure(
                    f"the TLS certificate of {authority} could not be validated",
                    target=self.target,
                    hint="check graph.ca_bundle",
                )
            return Unreachable(f"cannot reach the sign-in service {authority}", target=self.target)
        return AuthRefused(
            f"the sign-in to Microsoft 365 as {self.identity} failed: {_first_sentence(text)}",
            target=self.target,
            hint="check graph.auth, tenant_id, client_id and the credential in config.toml",
        )


# -- what Graph returns, as l1fix reads it ------------------------------------------------------
# kiota Parsables (duck-typed) holding only the fields l1fix selects. The SDK's generated models
# would parse the same JSON, but the first parse of a User imports ~1,250 model modules (about
# 1.1 s); requests still go through the SDK's request builders, adapter, middleware and auth.


class _View:
    """A read-only kiota Parsable: JSON name -> (attribute, kind, nested view)."""

    FIELDS: dict[str, tuple[str, str, Any]] = {}

    def __init__(self) -> None:
        self.additional_data: dict[str, Any] = {}
        for attr, _, _ in self.FIELDS.values():
            setattr(self, attr, None)

    @classmethod
    def create_from_discriminator_value(cls, parse_node: Any) -> _View:
        return cls()

    def get_field_deserializers(self) -> dict[str, Any]:
        def reader(attr: str, kind: str, nested: Any) -> Any:
            def read(node: Any) -> None:
                if kind == "object":
                    value = node.get_object_value(nested)
                elif kind == "objects":
                    value = node.get_collection_of_object_values(nested)
                else:
                    value = getattr(node, f"get_{kind}_value")()
                setattr(self, attr, value)

            return read

        return {name: reader(*spec) for name, spec in self.FIELDS.items()}

    def serialize(self, writer: Any) -> None:
        raise TypeError(f"{type(self).__name__} is read-only")


class _PasswordProfileView(_View):
    FIELDS = {"forceChangePasswordNextSignIn": ("force_change_password_next_sign_in", "bool", None)}


class _SignInActivityView(_View):
    FIELDS = {
        "lastSignInDateTime": ("last_sign_in_date_time", "datetime", None),
        "lastNonInteractiveSignInDateTime": ("last_non_interactive_sign_in_date_time", "datetime", None),
        "lastSuccessfulSignInDateTime": ("last_successful_sign_in_date_time", "datetime", None),
    }


class _UserView(_View):
    FIELDS = {
        "id": ("id", "str", None),
        "userPrincipalName": ("user_principal_name", "str", None),
        "mail": ("mail", "str", None),
        "displayName": ("display_name", "str", None),
        "accountEnabled": ("account_enabled", "bool", None),
        "lastPasswordChangeDateTime": ("last_password_change_date_time", "datetime", None),
        "passwordPolicies": ("password_policies", "str", None),
        "passwordProfile": ("password_profile", "object", _PasswordProfileView),
        "onPremisesSyncEnabled": ("on_premises_sync_enabled", "bool", None),
        "signInSessionsValidFromDateTime": ("sign_in_sessions_valid_from_date_time", "datetime", None),
        "userType": ("user_type", "str", None),
        "signInActivity": ("sign_in_activity", "object", _SignInActivityView),
    }


class _UserPage(_View):
    FIELDS = {
        "value": ("value", "objects", _UserView),
        "@odata.nextLink": ("odata_next_link", "str", None),
    }


class _RoleView(_View):
    FIELDS = {
        "id": ("id", "str", None),
        "displayName": ("display_name", "str", None),
        "roleTemplateId": ("role_template_id", "str", None),
    }


class _RolePage(_View):
    FIELDS = {
        "value": ("value", "objects", _RoleView),
        "@odata.nextLink": ("odata_next_link", "str", None),
    }


class _BoolAnswer(_View):
    FIELDS = {"value": ("value", "bool", None)}


class _Body:
    """A request body for kiota's JSON writer: exactly the given properties (booleans, strings, bodies)."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def serialize(self, writer: Any) -> None:
        for key, value in self.values.items():
            if isinstance(value, bool):
                writer.write_bool_value(key, value)
            elif isinstance(value, str):
                writer.write_str_value(key, value)
            else:
                writer.write_object_value(key, value)


# -- helpers --------------------------------------------------------------------------------


def _require_sdk() -> None:
    try:
        import msgraph  # noqa: F401
    except ImportError:
        raise BadInput(
            "Microsoft 365 fixes need the msgraph-sdk package, which is not installed",
            hint="pip install 'l1fix[m365]'",
        ) from None


def _import_request_builders() -> None:
    """Import the SDK's request builders l1fix uses, without their import-time DeprecationWarnings.

    Their nested `...RequestConfiguration` classes warn when the module is imported, whoever uses them.
    """
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in (
            "msgraph.generated.users.users_request_builder",
            "msgraph.generated.users.item.user_item_request_builder",
            "msgraph.generated.users.item.revoke_sign_in_sessions.revoke_sign_in_sessions_request_builder",
            "msgraph.generated.users.item.transitive_member_of.transitive_member_of_request_builder",
            "msgraph.generated.users.item.transitive_member_of.graph_directory_role."
            "graph_directory_role_request_builder",
        ):
            importlib.import_module(name)


def _credential_for(settings: GraphSettings, target: str) -> Secret | None:
    """Check that the chosen auth has what it needs; resolve its secret (env:, keyring:, file:, prompt)."""
    where = "[profiles.NAME.graph]"
    if settings.auth == "token":
        if not settings.access_token:
            raise BadInput("graph.auth = token needs graph.access_token", target=target, hint=f"set it in {where}")
        return resolve_secret(settings.access_token, "Microsoft Graph access token")
    missing = [k for k in ("tenant_id", "client_id") if not getattr(settings, k)]
    if missing:
        raise BadInput(
            f"no Microsoft 365 tenant configured (graph.{' and graph.'.join(missing)})",
            target=target,
            hint=f"set tenant_id and client_id (the app registration) in {where}",
        )
    if settings.auth == "device-code":
        return None
    if settings.certificate_path:
        if not Path(settings.certificate_path).is_file():
            raise BadInput(f"graph.certificate_path {settings.certificate_path} does not exist", target=target)
        if settings.certificate_password:
            return resolve_secret(settings.certificate_password, "password of the Graph certificate")
        return None
    if not settings.client_secret:
        raise BadInput(
            "graph.auth = app needs graph.client_secret or graph.certificate_path",
            target=target,
            hint='client_secret = "env:NAME" (or keyring:, file:), or a certificate registered on the app',
        )
    return resolve_secret(settings.client_secret, f"client secret of the Graph app {settings.client_id}")


def _tls_context(settings: GraphSettings) -> ssl.SSLContext:
    ca = str(settings.ca_bundle) if settings.ca_bundle else None
    try:
        context = ssl.create_default_context(cafile=ca)
    except FileNotFoundError:
        raise BadInput(f"graph.ca_bundle {ca} does not exist") from None
    except (ssl.SSLError, OSError) as exc:
        raise BadInput(f"graph.ca_bundle {ca} is not a readable CA PEM file ({type(exc).__name__})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _capped_retry_handler(base: type, option: Any, cap_s: float) -> Any:
    """The SDK's RetryHandler, except that a Retry-After longer than `cap_s` is not waited for."""

    class CappedRetryHandler(base):  # type: ignore[misc,valid-type]
        def get_delay_time(self, retry_count: int, response: Any = None, delay: float = 3.0) -> float:
            wait = super().get_delay_time(retry_count, response, delay)
            return wait if wait <= cap_s else option.MAX_DELAY  # MAX_DELAY: the handler gives up

    return CappedRetryHandler(options=option)


class _StaticToken:
    """An access token obtained elsewhere (auth = "token"), sent to the Graph host only."""

    def __init__(self, token: Secret, host: str) -> None:
        from kiota_abstractions.authentication import AllowedHostsValidator

        self._token = token
        self._hosts = AllowedHostsValidator([host])

    async def get_authorization_token(self, uri: str, additional_authentication_context: Any = None) -> str:
        return self._token.reveal() if self._hosts.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> Any:
        return self._hosts


def _show_device_code(verification_uri: str, user_code: str, expires_on: datetime) -> None:
    print(
        f"l1fix: to sign in to Microsoft 365, open {verification_uri} and enter the code {user_code} "
        f"(valid until {expires_on.astimezone():%H:%M})",
        file=sys.stderr,
        flush=True,
    )


def _no_keychain(exc: BaseException) -> bool:
    """msal-extensions found no encrypted store for the token cache (no libsecret, no display, ...)."""
    text = str(exc).lower()
    return any(word in text for word in ("libsecret", "encryption", "persistence", "keychain", "dpapi"))


def _write_private(path: Path, text: str) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "response_status_code", None)
    return status if isinstance(status, int) else None


def _graph_error(exc: BaseException) -> tuple[str | None, str | None]:
    """(code, message) of Graph's `{"error": {"code", "message"}}`, redacted and on one line."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if message:
        message = redact(str(message)).replace("\n", " ").strip()[:300]
    return (str(code) if code else None), (message or None)


def _describe(user: Any) -> str:
    upn = user.user_principal_name or "?"
    return f"{upn} ({user.display_name})" if user.display_name else upn


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_sentence(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    line = re.sub(r"^[A-Za-z]+Credential\.get_token failed:\s*", "", line)
    sentence = re.split(r"(?<=\.)\s", line, maxsplit=1)[0]
    return sentence[:200]
