"""Intake's HTTP API: every channel in (web and mobile, SMS 1708, integrated systems), tracking out, and the
reporter's own actions with the reporter token."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Response, status
from lokal.wilayah import get_wilayah
from starlette.concurrency import run_in_threadpool

from lapor.auth import (
    REPORTER_TOKEN_HEADER,
    ReporterCredential,
    authorize,
    authorize_complaint,
    reporter_credential,
    require,
)
from lapor.commands import etag, if_match_header, run_command
from lapor.complaint import ComplaintState, Status, fold
from lapor.context import ServiceContext
from lapor.limits import rate_limit
from lapor.patterns import CHANNEL_NAME
from lapor.principal import Principal
from lapor.privacy import (
    MASKED_BY,
    MASKING,
    ORIGINAL_REF,
    ReporterRoute,
    ReportNotVisible,
    can_see,
    submission_read,
)
from lapor.problems import BadRequest, NotFound
from lapor.store import NewEvent, RecordedEvent
from lapor.tracking import InvalidTrackingId, parse_tracking_id, stream_of
from schemas.events import Channel, ComplaintKind, EventData
from services.intake.decide import (
    SubmitComplaint,
    decide_feedback,
    decide_information,
    decide_ombudsman_consent,
    ensure_now,
)
from services.intake.idempotency import IdDerivation
from services.intake.leftovers import erased_unless_recorded
from services.intake.models import (
    ChannelSubmissionRequest,
    ComplaintView,
    ConsentRequest,
    FeedbackRequest,
    InformationRequest,
    ReporterActionResult,
    ReportFields,
    SmsMessage,
    SmsReply,
    SubmissionReceipt,
    SubmissionRequest,
    receipt_links,
)
from services.intake.projections import agency_name, keyword_agency
from services.intake.sms import HELP_REPLY, accepted_reply, parse_sms, sender_number
from services.intake.submit import Receipt, Report, submit
from services.intake.text import mask_personal_data
from services.intake.views import complaint_view
from services.intake.web import web_router

# The key is a credential: with it and the report's public text, anyone can replay the request and receive the
# reporter token. So it must be secret and too long to guess: 22 symbols of this alphabet hold over 128 bits when
# drawn at random (a UUID is 36).
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{22,128}$")
# The agency's name as the SMS reply gave it, kept for a redelivery (Report.retry_facts).
SMS_REPLY_AGENCY = "reply_agency_name"
ChannelName = Annotated[
    str,
    Path(pattern=CHANNEL_NAME, description="the client's channel (not sms: the gateway posts to /api/channels/sms)"),
]


def _not_the_sms_gateway(channel: ChannelName) -> None:
    """The SMS 1708 gateway (an integration token for channel `sms`) posts to its own route, which reads the message
    (keyword, sender, reply) and limits each sender. Session 32: it could post here too, and a report went in
    unparsed, past the sender's limit, with the identity and flags the body chose, recorded as channel `integration`
    with channel_ref `sms:...`. There is no such route for `sms`: a 404 for every caller, before authentication, as
    for a path no route serves (nobody may use it, so it is no one's to be refused, and a 422 would call a valid
    channel name invalid)."""
    if channel == Channel.sms:
        raise NotFound(
            "there is no /api/channels/sms/complaints: the SMS 1708 gateway posts each message to POST "
            "/api/channels/sms"
        )


def _tracking_id(text: str) -> str:
    try:
        return parse_tracking_id(text)
    except InvalidTrackingId as error:
        # 404, not 422: there is no report at this address; the detail says why the ID cannot be one.
        raise NotFound(str(error), reason=error.reason) from None


def _read(
    ctx: ServiceContext, tracking_id: str, *, opened_by: ReporterCredential | None = None
) -> tuple[list[RecordedEvent], ComplaintState]:
    """The report's events and state; NotFound when there is none. `opened_by`: the caller has no bearer token,
    only this reporter token (or none), so a confidential report it does not open is not there for them, the
    NotFound of an unknown ID. That is decided on the submission alone (confidentiality is the submission's, never
    changed later), before the rest of the stream is read and folded (session 30: a refused read of a long-lived
    confidential report did that work first, and then built the view, where an unknown ID did none)."""
    stream = stream_of(tracking_id)
    first = submission_read(stream)  # read already by `ConcealReporterMiddleware` for a path naming the report
    if first is None and opened_by is None:
        events = ctx.store.read_stream(stream)
    else:
        if first is None:
            first = ctx.store.read_stream(stream, limit=1)
        opened = bool(first) and (opened_by is None or _opens(opened_by, first[0]))
        events = first + ctx.store.read_stream(stream, from_version=1) if opened else []
    state = fold(events)
    if state is None:
        raise NotFound(f"no report with tracking ID {tracking_id}")
    return events, state


def _opens(credential: ReporterCredential, submitted: RecordedEvent) -> bool:
    """Whether a caller with no bearer token and `credential` may know of the report `submitted` begins."""
    reported = fold([submitted])
    return reported is not None and (not reported.confidential or credential.opens(reported))


def _seen_by(events: list[RecordedEvent], state: ComplaintState, principal: Principal | None) -> bool:
    # channel_ref is not folded: an integration client sees its own channel's reports by it (lapor.privacy).
    return can_see({**vars(state), "channel_ref": events[0].data.get("channel_ref")}, principal)


def _may_see(ctx: ServiceContext, tracking_id: str, principal: Principal | None) -> bool:
    """Whether `principal` may see report `tracking_id` (False when there is none), as its GET would answer."""
    events = ctx.store.read_stream(stream_of(tracking_id))
    state = fold(events)
    return state is not None and _seen_by(events, state, principal)


def _idempotency_key(value: str | None) -> str | None:
    if value is not None and not IDEMPOTENCY_KEY.fullmatch(value):
        raise BadRequest(
            "Idempotency-Key must be 22 to 128 letters, digits or ._:-, drawn at random (a random UUID): "
            "it is a secret, since a retry with it returns the reporter token"
        )
    return value


def _report(
    fields: ReportFields,
    channel: Channel,
    *,
    channel_ref: str | None = None,
    suggested_agency_id: str | None = None,
    received_at: datetime | None = None,
) -> Report:
    command = SubmitComplaint(
        tracking_id="",
        kind=fields.kind,
        title=fields.title,
        body=fields.body,
        category=fields.category,
        region_code=fields.region_code,
        location=fields.location.model_dump(exclude_none=True) if fields.location else None,
        attachments=tuple(attachment.model_dump() for attachment in fields.attachments),
        channel=channel,
        channel_ref=channel_ref,
        anonymous=fields.anonymous,
        confidential=fields.confidential,
        suggested_agency_id=suggested_agency_id,
        reporter_token_hash="",
    )
    identity = fields.reporter.model_dump(exclude_none=True) if fields.reporter else None
    return Report(command, identity, received_at)


def _receipt(receipt: Receipt, response: Response) -> SubmissionReceipt:
    """The same body for the first answer and every replay; headers tell them apart."""
    response.headers["Location"] = f"/api/complaints/{receipt.tracking_id}"
    response.headers["ETag"] = etag(0)
    if receipt.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return SubmissionReceipt(
        tracking_id=receipt.tracking_id,
        reporter_token=receipt.reporter_token,
        status=Status.submitted,
        submitted_at=receipt.event.recorded_at,
        verification_due=receipt.event.data["verification_due"],
        links=receipt_links(receipt.tracking_id),
    )


def _region_name(code: str | None) -> str | None:
    region = get_wilayah(code) if code else None
    return region.path if region else None


def build_router(ctx: ServiceContext) -> APIRouter:
    """Routes are `async` and do their blocking work (store, vault, read models) in one worker-thread call
    each (a request naming a report one more, `lapor.privacy.ConcealReporterMiddleware`'s): a sync route would cost
    a thread hop for itself, one for its `Context` dependency and one to serialise its answer. They use this `ctx`,
    the one the app was composed with. The routes naming a report are the reporter's (`ReporterRoute`)."""
    router = APIRouter(tags=["intake"], route_class=ReporterRoute)
    router.include_router(web_router())
    ids = IdDerivation(ctx.settings.signing_secret())
    get_wilayah("53.71")  # loads the region table (~0.25 s) now rather than in the first request

    @router.post(
        "/api/complaints",
        status_code=status.HTTP_201_CREATED,
        summary="Submit a report (web, mobile)",
        dependencies=[Depends(rate_limit("submission"))],
    )
    async def submit_complaint(
        report: SubmissionRequest,
        response: Response,
        principal: Principal | None = Depends(require("complaint.submit")),
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                description="the client's key for this report: a retry with it is answered once",
                json_schema_extra={"pattern": IDEMPOTENCY_KEY.pattern},  # the check is _idempotency_key's (a 400)
            ),
        ] = None,
    ) -> SubmissionReceipt:
        key = _idempotency_key(idempotency_key)
        receipt = await run_in_threadpool(
            submit,
            ctx,
            ids,
            _report(report, Channel(report.channel)),
            principal=principal,
            natural_key=None if key is None else f"web:{key}",
            request=report.model_dump(mode="json"),
        )
        return _receipt(receipt, response)

    @router.get(
        "/api/complaints/{tracking_id}",
        response_model=ComplaintView,
        response_model_exclude_unset=True,
        summary="Track a report",
    )
    async def track(
        tracking_id: str,
        response: Response,
        principal: Principal | None = Depends(require("complaint.read")),
        x_reporter_token: Annotated[str | None, Header(alias=REPORTER_TOKEN_HEADER)] = None,
    ) -> dict[str, Any]:
        def view() -> tuple[int, dict[str, Any]]:
            credential = reporter_credential(x_reporter_token)
            events, state = _read(ctx, _tracking_id(tracking_id), opened_by=None if principal else credential)
            caller = credential.principal_for(state) if principal is None and credential.opens(state) else principal
            if not _seen_by(events, state, caller):
                # Before the view is built (the vault's identity, the directory, a duplicate's original): an
                # official refused costs no more than the fold (session 30).
                raise NotFound(f"no report with tracking ID {state.tracking_id}")
            with ctx.db.read() as tx:
                try:
                    return state.version, complaint_view(
                        state,
                        events,
                        caller,
                        vault=ctx.vault,
                        agency_name=lambda agency_id: agency_name(tx, agency_id),
                        region_name=_region_name,
                        may_see=lambda other: _may_see(ctx, other, caller),
                        now=ctx.clock.now(),
                    )
                except ReportNotVisible:
                    raise NotFound(f"no report with tracking ID {state.tracking_id}") from None

        version, shown = await run_in_threadpool(view)
        response.headers["ETag"] = etag(version)
        return shown

    def act_as_reporter(
        tracking_id: str,
        credential: ReporterCredential,
        action: str,
        if_match: int | None,
        event_type: str,
        text: Mapping[str, Any],
        decide: Callable[[ComplaintState, Mapping[str, Any], datetime], EventData],
    ) -> tuple[str, ReporterActionResult]:
        """Run a reporter's action deciding `event_type`: the token must open this report; `text` (the event's
        free text) is masked for the log and its original vaulted. Returns the ETag and the result."""
        # Not the reporter: a confidential report is not there for them, as an unknown ID is not (GET answers so).
        _, state = _read(ctx, _tracking_id(tracking_id), opened_by=credential)
        principal = credential.principal_for(state)
        authorize_complaint(principal, action, state)
        # The text is masked once the runner has found the action allowed (If-Match, the report's state): lokal-id's
        # detector takes seconds on some texts, and an action refused (409, 412) cost that too, over and over with
        # one reporter token (session 29). The original goes to the vault before the append; erased at once if the
        # event is surely not recorded, else swept later should no event refer to it (`leftovers.py`).
        with erased_unless_recorded(ctx.vault) as written:
            logged: list[tuple[dict[str, Any], dict[str, Any]]] = []  # the masked text and its metadata, once

            def decision(current: ComplaintState, now: datetime) -> list[NewEvent]:
                ensure_now(current, event_type, now)
                if not logged:
                    masked, originals = mask_personal_data(event_type, text, ctx.vault.identity(state.reporter_ref))
                    metadata: dict[str, Any] = {MASKED_BY: MASKING}
                    if originals:
                        metadata[ORIGINAL_REF] = written.put(originals)
                    logged.append((masked, metadata))
                masked, metadata = logged[0]
                return [decide(current, masked, now).to_new_event(metadata=metadata)]

            written.appending = True
            result = run_command(ctx, stream_of(state.tracking_id), decision, principal=principal, if_match=if_match)
        _, after = _read(ctx, state.tracking_id)
        return result.etag, ReporterActionResult(
            tracking_id=after.tracking_id, status=after.status, version=result.version
        )

    async def reporter_action(response: Response, *args: Any) -> ReporterActionResult:
        tag, result = await run_in_threadpool(act_as_reporter, *args)
        response.headers["ETag"] = tag
        return result

    @router.post("/api/complaints/{tracking_id}/information", summary="Add the information asked for (tunda)")
    async def provide_information(
        tracking_id: str,
        request: InformationRequest,
        response: Response,
        x_reporter_token: Annotated[str | None, Header(alias=REPORTER_TOKEN_HEADER)] = None,
        if_match: int | None = Depends(if_match_header),
    ) -> ReporterActionResult:
        attachments = tuple(attachment.model_dump() for attachment in request.attachments)

        def decide(state: ComplaintState, text: Mapping[str, Any], now: datetime) -> EventData:
            return decide_information(state, text["text"], text.get("attachments", ()), now, ctx.policy)

        return await reporter_action(
            response,
            tracking_id,
            reporter_credential(x_reporter_token),
            "complaint.provide_information",
            if_match,
            "InformationProvided",
            {"text": request.text, **({"attachments": attachments} if attachments else {})},  # their links masked
            decide,
        )

    @router.post("/api/complaints/{tracking_id}/feedback", summary="Answer a resolution: satisfied or not")
    async def give_feedback(
        tracking_id: str,
        request: FeedbackRequest,
        response: Response,
        x_reporter_token: Annotated[str | None, Header(alias=REPORTER_TOKEN_HEADER)] = None,
        if_match: int | None = Depends(if_match_header),
    ) -> ReporterActionResult:
        def decide(state: ComplaintState, text: Mapping[str, Any], now: datetime) -> EventData:
            return decide_feedback(state, request.satisfied, request.rating, text.get("comment"), now)

        return await reporter_action(
            response,
            tracking_id,
            reporter_credential(x_reporter_token),
            "complaint.give_feedback",
            if_match,
            "FeedbackGiven",
            {"comment": request.comment} if request.comment else {},
            decide,
        )

    @router.post("/api/complaints/{tracking_id}/ombudsman-consent", summary="Consent to the Ombudsman takeover")
    async def consent_to_ombudsman(
        tracking_id: str,
        response: Response,
        request: ConsentRequest | None = None,
        x_reporter_token: Annotated[str | None, Header(alias=REPORTER_TOKEN_HEADER)] = None,
        if_match: int | None = Depends(if_match_header),
    ) -> ReporterActionResult:
        def decide(state: ComplaintState, text: Mapping[str, Any], now: datetime) -> EventData:
            return decide_ombudsman_consent(state, now)

        return await reporter_action(
            response,
            tracking_id,
            reporter_credential(x_reporter_token),
            "complaint.consent_ombudsman",
            if_match,
            "OmbudsmanConsentGiven",
            {},
            decide,
        )

    @router.post(
        "/api/channels/sms",
        status_code=status.HTTP_201_CREATED,
        summary="SMS 1708 gateway webhook",
        responses={200: {"description": "No report in the message: the reply is the help text"}},
    )
    async def receive_sms(
        message: SmsMessage,
        response: Response,
        principal: Principal | None = Depends(require("channel.sms")),
    ) -> SmsReply:
        authorize(principal, "channel.sms", channel=Channel.sms)
        reply = await run_in_threadpool(_receive_sms, ctx, ids, message, principal)
        if reply.tracking_id is None:
            response.status_code = status.HTTP_200_OK
        return reply

    @router.post(
        "/api/channels/{channel}/complaints",
        status_code=status.HTTP_201_CREATED,
        summary="A report from an agency's own system (idempotent on external_id)",
        dependencies=[Depends(_not_the_sms_gateway)],  # before `require`: the route is no one's for `sms`
    )
    async def receive_from_channel(
        channel: ChannelName,
        report: ChannelSubmissionRequest,
        response: Response,
        principal: Principal | None = Depends(require("channel.submit")),
    ) -> SubmissionReceipt:
        assert principal is not None  # an integration-only action: require() refused anyone else
        receipt = await run_in_threadpool(
            submit,
            ctx,
            ids,
            _report(
                report,
                Channel.integration,
                # lapor.privacy.source_channel reads the client's channel back from this prefix.
                channel_ref=f"{channel}:{report.external_id}",
                suggested_agency_id=principal.agency_id,
                received_at=report.received_at,
            ),
            principal=principal,
            natural_key=f"channel:{channel}:{report.external_id}",
            request=report.model_dump(mode="json", exclude={"received_at"}),
            conflict_detail=f"{channel} sent external_id {report.external_id} before with different content",
        )
        return _receipt(receipt, response)

    return router


def _receive_sms(ctx: ServiceContext, ids: IdDerivation, message: SmsMessage, principal: Principal | None) -> SmsReply:
    phone = sender_number(message.sender)
    sender = ids.sender_key(phone)

    def admit() -> None:
        """The limit is per sender (session 29; it was per client address, and the gateway is the webhook's one
        client, so it capped the whole national channel): counted only for a message not answered before, so the
        gateway's retry of an accepted message gets its answer again."""
        ctx.rate_limits.hit("sms", sender)

    with ctx.db.read() as tx:
        parsed = parse_sms(message.text, lambda keyword: keyword_agency(tx, keyword))
    if parsed is None:
        admit()  # the help text is an SMS sent back too
        return SmsReply(reply=HELP_REPLY)
    agency = parsed.agency
    command = SubmitComplaint(
        tracking_id="",
        kind=ComplaintKind.pengaduan,
        title="",  # cut from the masked body by `submit`
        body=parsed.content,
        region_code=agency.region_code if agency else None,
        channel=Channel.sms,
        channel_ref=message.message_id,
        suggested_agency_id=agency.agency_id if agency else None,
        reporter_token_hash="",
    )
    receipt = submit(
        ctx,
        ids,
        Report(
            command,
            {"phone": phone},
            message.received_at,
            title_from_body=True,
            retry_facts={SMS_REPLY_AGENCY: agency.name} if agency else {},
        ),
        principal=principal,
        natural_key=f"sms:{message.message_id}",
        # A redelivery may carry another received_at; the same sender and text make it the same message. The
        # sender as one number: a gateway may spell the same subscriber another way when it redelivers (`0812...`,
        # `+62812...`), and that is the same message, not a conflict (session 31; it was the spelling as received).
        request={"sender": phone, "text": message.text},
        # Messages recorded before session 31 hold the digest of the sender as spelled: the same spelling again
        # is still their redelivery.
        earlier_requests=({"sender": message.sender, "text": message.text},),
        conflict_detail=f"message {message.message_id} was delivered before with another sender or text",
        admit=admit,
    )
    # The reply is built from the stored report, so a redelivery gets the same text even if the directory
    # learned the keyword, or renamed the agency, in between.
    to = receipt.event.metadata["intake"].get(SMS_REPLY_AGENCY)
    if to is None and (to_agency := receipt.event.data.get("suggested_agency_id")) is not None:
        # Recorded before session 24, without the name: the directory's name now.
        with ctx.db.read() as tx:
            to = agency_name(tx, to_agency) or to_agency
    return SmsReply(
        reply=accepted_reply(receipt.tracking_id, receipt.reporter_token, to), tracking_id=receipt.tracking_id
    )
