"""Reads for drills and training: readiness, the compliance matrix, the programme year.

Pages that list many people or drills fetch everything they show in a fixed number of queries
and compute statuses in memory (the compliance matrix is people × kinds; one query per cell would
grow with the team).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from incidents.api.models import hash_token
from incidents.models import Incident

from .models import (
    MANAGE_PERMISSION,
    VIEW_CERTIFICATIONS_PERMISSION,
    VIEW_PERMISSION,
    Cadence,
    CalendarFeedToken,
    Certification,
    CertificationKind,
    Drill,
    DrillFinding,
    DrillKind,
    DrillParticipant,
    DrillState,
    MentoredResponse,
    ProcedureAcknowledgement,
    ProcedureDocument,
    ReadinessOverride,
    TrainingPolicy,
    TrainingProfile,
)

User = get_user_model()


def training_policy() -> TrainingPolicy:
    policy, _ = TrainingPolicy.objects.get_or_create(pk=1)
    return policy


def business_day(at: datetime) -> date:
    """Certifications run by calendar day in the firm's time zone."""
    return at.astimezone(ZoneInfo(settings.TMT_BUSINESS_TIME_ZONE)).date()


# -- certification status ---------------------------------------------------------------------


class CertStatus:
    VALID = "valid"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    MISSING = "missing"

    LABELS = {VALID: "Valid", EXPIRING: "Expiring", EXPIRED: "Expired", MISSING: "Missing"}


@dataclass(frozen=True)
class CertCell:
    status: str
    record: Certification | None = None

    @property
    def label(self) -> str:
        return CertStatus.LABELS[self.status]

    @property
    def expires_on(self) -> date | None:
        return self.record.expires_on if self.record else None


def cert_cell(records: list[Certification], *, day: date, expiring_within_days: int) -> CertCell:
    """The status of one person's records of one kind on `day`.

    Several records can be valid at once (an early renewal); the one that lasts longest counts.
    """
    valid = [r for r in records if r.valid_on(day)]
    if valid:
        best = max(valid, key=lambda r: r.expires_on or date.max)
        if best.expires_on is not None and (best.expires_on - day).days <= expiring_within_days:
            return CertCell(CertStatus.EXPIRING, best)
        return CertCell(CertStatus.VALID, best)
    expired = [r for r in records if r.expires_on is not None and r.expires_on <= day]
    if expired:
        return CertCell(CertStatus.EXPIRED, max(expired, key=lambda r: r.expires_on))
    return CertCell(CertStatus.MISSING, None)


def required_kinds() -> list[CertificationKind]:
    """Active kinds required for at least one role, with those roles' ids prefetched."""
    return list(
        CertificationKind.objects.filter(active=True, required_for__isnull=False)
        .distinct()
        .prefetch_related("required_for")
        .order_by("order", "name")
    )


def kinds_required_of(
    *, group_ids: set[int], group_names: set[str], kinds: list[CertificationKind]
) -> list[CertificationKind]:
    return [kind for kind in kinds if any(g.pk in group_ids or g.name in group_names for g in kind.required_for.all())]


def response_team_group_ids(kinds: list[CertificationKind] | None = None) -> set[int]:
    kinds = required_kinds() if kinds is None else kinds
    return {g.pk for kind in kinds for g in kind.required_for.all()}


# -- mentoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mentoring:
    done: int
    required: int
    waived: bool
    waiver_reason: str = ""

    @property
    def complete(self) -> bool:
        return self.waived or self.done >= self.required

    @property
    def label(self) -> str:
        if self.waived:
            return "Waived"
        return f"{min(self.done, self.required)} of {self.required}"


def mentoring_of(*, profile: TrainingProfile | None, done: int, policy: TrainingPolicy) -> Mentoring:
    required = policy.mentored_responses_required
    if profile is not None and profile.mentored_responses_required is not None:
        required = profile.mentored_responses_required
    waived = profile is not None and profile.mentoring_waived_at is not None
    return Mentoring(
        done=done, required=required, waived=waived, waiver_reason=profile.mentoring_waiver_reason if waived else ""
    )


def mentoring_status(user, *, policy: TrainingPolicy | None = None) -> Mentoring:
    policy = policy or training_policy()
    profile = TrainingProfile.objects.filter(user=user).first()
    done = MentoredResponse.objects.filter(mentee=user).count()
    return mentoring_of(profile=profile, done=done, policy=policy)


# -- readiness --------------------------------------------------------------------------------


def _override_in_effect(*, user, duty: str, at: datetime, incident: Incident | None) -> ReadinessOverride | None:
    if not duty:
        return None
    overrides = ReadinessOverride.objects.filter(person=user, duty=duty, valid_from__lte=at, valid_until__gt=at)
    if incident is not None:
        overrides = overrides.filter(Q(incident__isnull=True) | Q(incident=incident))
    else:
        overrides = overrides.filter(incident__isnull=True)
    return overrides.order_by("-granted_at").first()


@dataclass(frozen=True)
class Readiness:
    """Whether someone may take on-call or incident command, and if not, why: the one rule.

    The training page's banner, the compliance matrix and its CSV, the API's commander check and
    the gates on the roster and on incident command all read it. It applies to the members of a
    response-team role (one some active certification kind is required for) and to anyone being
    given one, and asks of them what the seed's training requirements do: every certification
    required of their roles valid, the mentored responses done (or waived), and the current
    procedures acknowledged. Required is whatever the admin's certification kinds say.
    """

    certifications: tuple[tuple[CertificationKind, CertCell], ...]
    mentoring: Mentoring
    procedure: ProcedureDocument | None
    acknowledged: bool
    problems: tuple[str, ...]

    @property
    def applies(self) -> bool:
        return bool(self.certifications)

    @property
    def ready(self) -> bool:
        return not self.problems


def readiness_judge(
    *,
    required: list[CertificationKind],
    records: dict[int, list[Certification]],
    mentoring: Mentoring,
    procedure: ProcedureDocument | None,
    acknowledged: bool,
    day: date,
    policy: TrainingPolicy,
) -> Readiness:
    """The rule itself, on data already loaded (one person's, or the matrix's for everyone)."""
    cells = []
    problems = []
    for kind in required:
        mine = records.get(kind.pk, [])
        cell = cert_cell(mine, day=day, expiring_within_days=policy.expiring_within_days)
        cells.append((kind, cell))
        if cell.status == CertStatus.EXPIRED:
            problems.append(f"{kind.name} expired on {cell.record.expires_on:%d %b %Y}.")
        elif cell.status == CertStatus.MISSING:
            future = [r for r in mine if r.issued_on > day]
            if future:
                problems.append(f"{kind.name} is only valid from {min(r.issued_on for r in future):%d %b %Y}.")
            else:
                problems.append(f"No {kind.name} on record.")
    if required:
        if not mentoring.complete:
            problems.append(
                f"Mentoring not finished: {mentoring.done} of {mentoring.required} mentored incident responses."
            )
        if procedure is not None and not acknowledged:
            problems.append(f"The response procedures (version {procedure.version}) are not acknowledged yet.")
    return Readiness(
        certifications=tuple(cells),
        mentoring=mentoring,
        procedure=procedure,
        acknowledged=acknowledged,
        problems=tuple(problems),
    )


def readiness_of(*, user, at: datetime, roles: tuple[str, ...] | list[str] = ()) -> Readiness:
    """`user`'s readiness at `at`, ignoring overrides and the switch (readiness_problems has them).

    `roles`: the role someone is being given (a rotation's), required of them as if they held it.
    """
    kinds = required_kinds()
    group_ids = set(user.groups.values_list("pk", flat=True))
    required = kinds_required_of(group_ids=group_ids, group_names=set(roles), kinds=kinds)
    policy = training_policy()
    records: dict[int, list[Certification]] = defaultdict(list)
    for record in Certification.objects.filter(person=user, kind__in=required):
        records[record.kind_id].append(record)
    procedure = current_procedure()
    acknowledged = procedure is None or (
        ProcedureAcknowledgement.objects.filter(document=procedure, person=user).exists()
    )
    return readiness_judge(
        required=required,
        records=records,
        mentoring=mentoring_status(user, policy=policy),
        procedure=procedure,
        acknowledged=acknowledged,
        day=business_day(at),
        policy=policy,
    )


def readiness_findings(*, user, at: datetime, roles: tuple[str, ...] | list[str] = ()) -> list[str]:
    """What stands between `user` and a response duty at `at`, ignoring overrides and the switch."""
    return list(readiness_of(user=user, at=at, roles=roles).problems)


def readiness_problems(
    *,
    user,
    at: datetime,
    duty: str = "",
    roles: tuple[str, ...] | list[str] = (),
    incident: Incident | None = None,
) -> list[str]:
    """The readiness gate: [] when `user` may take the duty at `at`, otherwise the reasons.

    Off when settings.TMT_ENFORCE_READINESS is false; a manager's override for the duty in effect
    at `at` lets the person through (it was recorded with its justification).
    """
    if not settings.TMT_ENFORCE_READINESS or user is None:
        return []
    problems = readiness_findings(user=user, at=at, roles=roles)
    if problems and _override_in_effect(user=user, duty=duty, at=at, incident=incident) is not None:
        return []
    return problems


def is_certified_mentor(user, *, at: datetime) -> bool:
    """Holds every required certification on that day and is past their own mentoring."""
    kinds = required_kinds()
    if not kinds:
        return True
    day = business_day(at)
    policy = training_policy()
    records: dict[int, list[Certification]] = defaultdict(list)
    for record in Certification.objects.filter(person=user, kind__in=kinds):
        records[record.kind_id].append(record)
    for kind in kinds:
        cell = cert_cell(records[kind.pk], day=day, expiring_within_days=policy.expiring_within_days)
        if cell.status not in (CertStatus.VALID, CertStatus.EXPIRING):
            return False
    group_ids = set(user.groups.values_list("pk", flat=True))
    if group_ids & response_team_group_ids(kinds):
        return mentoring_status(user, policy=policy).complete
    return True


def needs_mentoring(user, *, policy: TrainingPolicy | None = None) -> bool:
    kinds = required_kinds()
    group_ids = set(user.groups.values_list("pk", flat=True))
    if not group_ids & response_team_group_ids(kinds):
        return False
    return not mentoring_status(user, policy=policy).complete


def incident_participants(incident: Incident) -> list:
    """People who acted on an incident: its commander, whoever acknowledged, timeline authors."""
    ids = set(incident.timeline.exclude(owner=None).values_list("owner_id", flat=True))
    ids.update(pk for pk in (incident.commander_id, incident.acknowledged_by_id) if pk)
    return list(User.objects.filter(pk__in=ids, is_active=True).order_by("pk"))


# -- procedures -------------------------------------------------------------------------------


def current_procedure() -> ProcedureDocument | None:
    return ProcedureDocument.objects.exclude(published_at=None).order_by("-version").first()


# -- the team and the compliance matrix -------------------------------------------------------


def response_team_members(kinds: list[CertificationKind] | None = None) -> QuerySet:
    group_ids = response_team_group_ids(kinds)
    return (
        User.objects.filter(is_active=True, groups__in=group_ids)
        .distinct()
        .order_by("first_name", "last_name", "username")
    )


@dataclass
class MatrixRow:
    person: object
    cells: list[CertCell]
    readiness: Readiness
    roles: list[str] = field(default_factory=list)

    @property
    def mentoring(self) -> Mentoring:
        return self.readiness.mentoring

    @property
    def acknowledged(self) -> bool:
        return self.readiness.acknowledged

    @property
    def ready(self) -> bool:
        return self.readiness.ready


@dataclass
class ComplianceMatrix:
    kinds: list[CertificationKind]
    rows: list[MatrixRow]
    procedure: ProcedureDocument | None
    day: date
    counts: dict[str, int]

    @property
    def not_acknowledged(self) -> list[MatrixRow]:
        return [r for r in self.rows if not r.acknowledged]


def compliance_matrix(*, at: datetime | None = None) -> ComplianceMatrix:
    """People × required certification kinds, mentoring and the current procedure: 6 queries."""
    at = at or timezone.now()
    day = business_day(at)
    policy = training_policy()
    kinds = required_kinds()
    procedure = current_procedure()
    team_groups = response_team_group_ids(kinds)
    people = list(
        response_team_members(kinds)
        .select_related("training_profile")
        .annotate(_mentored=Count("mentored_responses", distinct=True))
        .prefetch_related(
            Prefetch("certifications", queryset=Certification.objects.filter(kind__in=kinds).select_related("kind")),
            Prefetch("groups", to_attr="role_list"),
        )
    )
    acknowledged = set()
    if procedure is not None:
        acknowledged = set(
            ProcedureAcknowledgement.objects.filter(document=procedure, person__in=people).values_list(
                "person_id", flat=True
            )
        )
    counts = {CertStatus.VALID: 0, CertStatus.EXPIRING: 0, CertStatus.EXPIRED: 0, CertStatus.MISSING: 0}
    rows = []
    for person in people:
        by_kind: dict[int, list[Certification]] = defaultdict(list)
        for record in person.certifications.all():
            by_kind[record.kind_id].append(record)
        role_ids = {g.pk for g in person.role_list}
        readiness = readiness_judge(
            required=kinds_required_of(group_ids=role_ids, group_names=set(), kinds=kinds),
            records=by_kind,
            mentoring=mentoring_of(
                profile=getattr(person, "training_profile", None), done=person._mentored, policy=policy
            ),
            procedure=procedure,
            acknowledged=procedure is None or person.pk in acknowledged,
            day=day,
            policy=policy,
        )
        judged = {kind.pk: cell for kind, cell in readiness.certifications}
        cells = [judged.get(kind.pk, CertCell("n/a")) for kind in kinds]
        for cell in judged.values():
            counts[cell.status] += 1
        rows.append(
            MatrixRow(
                person=person,
                cells=cells,
                readiness=readiness,
                roles=sorted(g.name for g in person.role_list if g.pk in team_groups),
            )
        )
    return ComplianceMatrix(kinds=kinds, rows=rows, procedure=procedure, day=day, counts=counts)


# -- drills -----------------------------------------------------------------------------------


def drill_queryset() -> QuerySet[Drill]:
    return Drill.objects.select_related("kind", "facilitator").annotate(
        participant_count=Count("participants", distinct=True)
    )


def upcoming_drills(*, now: datetime | None = None, limit: int = 10) -> list[Drill]:
    now = now or timezone.now()
    return list(
        drill_queryset()
        .filter(state__in=[DrillState.PLANNED, DrillState.IN_PROGRESS], scheduled_start__gte=now - timedelta(days=1))
        .order_by("scheduled_start")[:limit]
    )


def drills_of(user) -> QuerySet[Drill]:
    return (
        drill_queryset()
        .filter(Q(participants__user=user) | Q(facilitator=user))
        .distinct()
        .order_by("-scheduled_start")
    )


# -- who may see and run what (the pages and the API ask these same questions) -------------------


def drill_visible_to(drill: Drill, user) -> bool:
    """The team sees every drill; anyone else the drills they facilitate or take part in."""
    return (
        user.has_perm(VIEW_PERMISSION)
        or drill.facilitator_id == user.pk
        or any(p.user_id == user.pk for p in drill.participants.all())
    )


def drill_runnable_by(drill: Drill, user) -> bool:
    """Trainers run every drill (start, change, cancel, complete), a facilitator their own."""
    return user.has_perm(MANAGE_PERMISSION) or drill.facilitator_id == user.pk


def training_record_visible_to(person_id: int, user) -> bool:
    """Everyone sees their own certifications and training record; trainers and managers everyone's."""
    return person_id == user.pk or user.has_perm(VIEW_CERTIFICATIONS_PERMISSION)


def certifications_visible_to(user) -> QuerySet[Certification]:
    records = Certification.objects.all()
    return records if user.has_perm(VIEW_CERTIFICATIONS_PERMISSION) else records.filter(person=user)


def drill_detail(pk: int) -> Drill:
    return (
        Drill.objects.select_related(
            "kind", "facilitator", "created_by", "started_by", "completed_by", "cancelled_by", "incident__severity"
        )
        .prefetch_related(
            Prefetch("participants", queryset=DrillParticipant.objects.select_related("user").order_by("id")),
            "targets",
            Prefetch(
                "findings",
                queryset=DrillFinding.objects.select_related("action_item__owner", "created_by").order_by("id"),
            ),
            "stop_attempts",
        )
        .get(pk=pk)
    )


@dataclass
class MonthCell:
    year: int
    month: int
    drills: list[Drill]
    fire_drill_gap: bool
    is_past: bool
    is_current: bool

    @property
    def label(self) -> str:
        return date(self.year, self.month, 1).strftime("%B")


@dataclass
class QuarterCell:
    quarter: int
    months: list[MonthCell]
    missing_kinds: list[DrillKind]
    is_past: bool


@dataclass
class Programme:
    year: int
    quarters: list[QuarterCell]
    monthly_kinds: list[DrillKind]
    quarterly_kinds: list[DrillKind]

    @property
    def gap_count(self) -> int:
        return sum(m.fire_drill_gap for q in self.quarters for m in q.months) + sum(
            len(q.missing_kinds) for q in self.quarters
        )


def programme_year(*, year: int, today: date | None = None) -> Programme:
    """The year by quarter and month, with the seed's cadence gaps flagged (2 queries).

    Gaps: a month without a (not cancelled) fire drill, a quarter without each quarterly
    exercise kind. Months are calendar months in the display time zone.
    """
    today = today or timezone.localdate()
    kinds = list(DrillKind.objects.filter(active=True).order_by("cadence", "order", "name"))
    monthly = [k for k in kinds if k.cadence == Cadence.MONTHLY]
    quarterly = [k for k in kinds if k.cadence == Cadence.QUARTERLY]
    tz = timezone.get_current_timezone()
    start = datetime(year, 1, 1, tzinfo=tz)
    end = datetime(year + 1, 1, 1, tzinfo=tz)
    drills = list(
        drill_queryset().filter(scheduled_start__gte=start, scheduled_start__lt=end).order_by("scheduled_start", "id")
    )
    by_month: dict[int, list[Drill]] = defaultdict(list)
    for drill in drills:
        by_month[timezone.localtime(drill.scheduled_start).month].append(drill)
    quarters = []
    for q in range(4):
        months = []
        kinds_seen: set[int] = set()
        for month in range(q * 3 + 1, q * 3 + 4):
            month_drills = by_month[month]
            live = [d for d in month_drills if d.state != DrillState.CANCELLED]
            kinds_seen.update(d.kind_id for d in live if d.kind.cadence == Cadence.QUARTERLY)
            months.append(
                MonthCell(
                    year=year,
                    month=month,
                    drills=month_drills,
                    fire_drill_gap=bool(monthly) and not any(d.kind.cadence == Cadence.MONTHLY for d in live),
                    is_past=(year, month) < (today.year, today.month),
                    is_current=(year, month) == (today.year, today.month),
                )
            )
        quarters.append(
            QuarterCell(
                quarter=q + 1,
                months=months,
                missing_kinds=[k for k in quarterly if k.pk not in kinds_seen],
                is_past=(year, q * 3 + 3) < (today.year, today.month),
            )
        )
    return Programme(year=year, quarters=quarters, monthly_kinds=monthly, quarterly_kinds=quarterly)


def mentoring_candidates(*, since: datetime) -> list[tuple[Incident, object, object]]:
    """(incident, mentee, mentor) triples not yet recorded, from incidents resolved since `since`."""
    policy = training_policy()
    incidents = (
        Incident.objects.filter(resolved_at__gte=since)
        .exclude(state="cancelled")
        .select_related("commander")
        .order_by("resolved_at")
    )
    found = []
    for incident in incidents:
        people = incident_participants(incident)
        if len(people) < 2:
            continue
        mentees = [p for p in people if needs_mentoring(p, policy=policy)]
        if not mentees:
            continue
        already = set(MentoredResponse.objects.filter(incident=incident).values_list("mentee_id", flat=True))
        # The commander first: the natural mentor of an incident they ran.
        ordered = sorted(people, key=lambda p: p.pk != incident.commander_id)
        for mentee in mentees:
            if mentee.pk in already:
                continue
            mentor = next(
                (p for p in ordered if p.pk != mentee.pk and is_certified_mentor(p, at=incident.resolved_at)), None
            )
            if mentor is not None:
                found.append((incident, mentee, mentor))
    return found


# -- calendar feeds ---------------------------------------------------------------------------

# A raw token is 43 characters; anything much longer is not one of ours.
MAX_FEED_TOKEN_LENGTH = 64


def calendar_feed_owner(raw: str):
    """The active person whose feed URL carries this token, or None.

    Looked up by the token's SHA-256 through the unique index: nothing compares secrets
    character by character, so the answer's timing says nothing about how close a guess came.
    """
    if not raw or len(raw) > MAX_FEED_TOKEN_LENGTH:
        return None
    row = CalendarFeedToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
    if row is None or not row.user.is_active:
        return None
    return row.user
