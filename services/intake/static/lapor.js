// The citizen pages of LAPOR!: the report form (/), tracking (/lacak) with the reporter's actions, and the public
// statistics (/statistik). Plain script, no framework: it only calls the public API (POST /api/complaints, GET
// /api/complaints/{id} and the reporter's information, feedback and ombudsman-consent, GET /api/public/statistics)
// and writes answers as text, never as HTML.
"use strict";

const STATUS = {
  submitted: "Menunggu verifikasi",
  pended: "Menunggu informasi tambahan dari pelapor",
  verified: "Terverifikasi, menunggu diteruskan ke instansi",
  disposed: "Diteruskan ke instansi",
  returned: "Dikembalikan ke admin nasional untuk diteruskan ulang",
  in_progress: "Sedang ditindaklanjuti",
  resolved: "Selesai ditindaklanjuti, menunggu tanggapan pelapor",
  closed: "Ditutup",
  archived: "Diarsipkan",
  duplicate: "Sama dengan laporan lain",
};

function moment(text) {
  return text ? new Date(text).toLocaleString("id-ID", { dateStyle: "long", timeStyle: "short" }) : "—";
}

// A key per report being written: a retry of the same report (a double click, a lost answer) is taken once.
function newIdempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The API's field errors in the citizen's words, by their `type`; any other keeps the API's own message.
const FIELD_ERRORS = {
  missing: "Wajib diisi.",
  string_too_short: "Wajib diisi.",
  string_too_long: "Terlalu panjang.",
  text_invisible: "Isi dengan teks yang terbaca, bukan hanya spasi.",
  text_markup: "Gunakan teks biasa: kode HTML tidak diterima.",
  text_control: "Mengandung karakter yang tidak diizinkan.",
  text_encoding: "Mengandung karakter yang tidak diizinkan.",
  region_code: "Pilih wilayah dari daftar.",
  phone: "Nomor telepon tidak valid: awali dengan 0, 62, atau +62.",
  string_pattern_mismatch: "Formatnya tidak valid.",
};

// What an application/problem+json answer says: one line for the form, and one per field it names.
async function problemOf(response) {
  let problem = {};
  try {
    problem = await response.json();
  } catch (error) {
    problem = {};
  }
  const fields = {};
  for (const item of problem.errors || []) {
    const location = item.location || [];
    const field = location[location.length - 1];
    if (typeof field === "string" && !(field in fields)) fields[field] = FIELD_ERRORS[item.type] || item.message;
  }
  let detail = problem.detail || problem.title || `Permintaan gagal (HTTP ${response.status}).`;
  if (response.status === 422 && Object.keys(fields).length) {
    detail = "Belum terkirim: periksa isian yang ditandai.";
  } else if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    detail = "Terlalu banyak permintaan dari alamat Anda dalam waktu singkat. Coba lagi"
      + (wait ? ` dalam ${wait} detik.` : " sebentar lagi.");
  } else if (response.status >= 500) {
    detail = "Terjadi gangguan pada server. Coba kirim lagi sebentar lagi: yang sama tidak akan tercatat dua kali.";
  }
  return { detail, fields };
}

// The answer to a request, or null when the server could not be reached (said in the element `errorId`).
async function reached(url, options, errorId,
  unreachable = "Tidak dapat menghubungi server: periksa sambungan internet Anda.") {
  try {
    return await fetch(url, options);
  } catch (error) {
    text(errorId, unreachable);
    return null;
  }
}

// Each of `names` gets the message `messages` has for it beside its control (an element `<name>-error` in the
// control's paragraph), and the control aria-invalid while it has one; the others are cleared.
function markFields(names, messages) {
  for (const name of names) {
    const error = document.getElementById(`${name}-error`);
    const control = error.parentElement.querySelector("input, textarea, select");
    const message = messages[name] || "";
    error.textContent = message;
    if (message) {
      control.setAttribute("aria-invalid", "true");
      control.setAttribute("aria-describedby", error.id);
    } else {
      control.removeAttribute("aria-invalid");
      control.removeAttribute("aria-describedby");
    }
  }
}

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function setupReportForm(form) {
  let key = newIdempotencyKey();
  // A report sent whose answer never came (the connection dropped, or the server failed): it may have been filed.
  // Sent again unchanged, with its key, it is answered once. Changed, it would be a second report (or a 409 for
  // the key), so the one sent first is asked for again before anything else.
  let unanswered = null;  // { key, body }
  const errorFields = ["title", "body", "region_code", "category", "name", "phone", "email"];
  const send = (attempt) => fetch("/api/complaints", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Idempotency-Key": attempt.key },
    body: attempt.body,
  });
  const showReceipt = (receipt, notice) => {
    unanswered = null;
    text("tracking-id", receipt.tracking_id);
    text("reporter-token", receipt.reporter_token);
    text("verification-due", moment(receipt.verification_due));
    text("receipt-notice", notice);
    document.getElementById("receipt-notice").hidden = !notice;
    document.getElementById("track-link").href = "/lacak#" + encodeURIComponent(receipt.tracking_id);
    form.hidden = true;
    document.getElementById("receipt").hidden = false;
    document.getElementById("receipt-heading").focus();  // the form held the focus: it goes on from the receipt
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    markFields(errorFields, {});
    text("form-error", "");
    const value = (name) => form.elements[name].value.trim();
    const report = {
      kind: form.elements.kind.value,
      title: value("title"),
      body: value("body"),
      region_code: value("region_code"),
      anonymous: form.elements.anonymous.checked,
      confidential: form.elements.confidential.checked,
    };
    if (value("category")) report.category = value("category");
    const reporter = {};
    for (const name of ["name", "phone", "email"]) if (value(name)) reporter[name] = value(name);
    if (Object.keys(reporter).length) report.reporter = reporter;
    const body = JSON.stringify(report);
    const button = document.getElementById("submit");
    button.disabled = true;
    try {
      if (unanswered && unanswered.body !== body) {
        const earlier = await send(unanswered);
        if (earlier.ok) {
          showReceipt(await earlier.json(), "Laporan Anda sudah terkirim sebelum Anda mengubahnya; perubahan "
            + "terakhir tidak ikut terkirim. Tambahkan lewat halaman Lacak laporan bila admin meminta informasi.");
          return;
        }
        if (earlier.status >= 500 || earlier.status === 429) {  // it may have been filed all the same
          text("form-error", (await problemOf(earlier)).detail);
          return;
        }
        unanswered = null;  // refused: the earlier one was not filed, so the changed one is a report of its own
        key = newIdempotencyKey();
      }
      const pending = unanswered;  // a report that may have been filed already, or null
      unanswered = unanswered || { key, body };  // until an answer says what became of it
      const response = await send(unanswered);
      if (!response.ok) {
        // Refused (4xx), nothing was recorded: the corrected report is a new request. A server error keeps it
        // unanswered, as a lost answer does (below). The rate limit (429) turned the request away unread, so it says
        // nothing of one sent before whose answer was lost: that stays unanswered, its key kept (taken for a
        // refusal, the next attempt filed that report twice; a bug hunt).
        if (response.status === 429) {
          unanswered = pending;
        } else if (response.status < 500) {
          unanswered = null;
          key = newIdempotencyKey();
        }
        const problem = await problemOf(response);
        text("form-error", problem.detail);
        markFields(errorFields, problem.fields);
        return;
      }
      showReceipt(await response.json(), "");
    } catch (error) {
      text("form-error", "Laporan belum terkirim: periksa sambungan internet Anda, lalu coba lagi.");
    } finally {
      button.disabled = false;
    }
  });
  // Leaving the page, the filed report's receipt and form are emptied: the browser keeps a page it leaves, as it
  // was, for the Back button, which on a shared computer showed the next person the reporter's token. A report
  // not sent yet stays, for its writer to finish.
  window.addEventListener("pagehide", () => {
    const receipt = document.getElementById("receipt");
    if (receipt.hidden) return;
    for (const id of ["tracking-id", "reporter-token", "verification-due"]) text(id, "");
    receipt.hidden = true;
    form.reset();
    form.hidden = false;
    key = newIdempotencyKey();
  });
}

// The report on the tracking page, the number and reporter token it was looked up with (the reporter's actions
// need the report and its token).
const tracked = { report: null, token: "", asked: "" };

// What a tracking number or a token copied from a chat, an SMS or a document may carry that is not part of it:
// spaces and line breaks, and characters that show nothing (zero width space, the marks, embeddings and isolates of
// direction, word joiner, soft hyphen, the BOM: lapor.patterns.INVISIBLE). Session 31: a token pasted with one was
// put in a header as it was, which fetch refuses to send, and the page said the internet could not be reached.
const NOT_TYPED = /[\s\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]/g;
// A reporter token is URL-safe base64 (lapor.auth.new_reporter_token); what is not can open no report.
const TOKEN = /^[A-Za-z0-9_-]*$/;

async function track(form) {
  text("lacak-error", "");
  const trackingId = form.elements.tracking_id.value.replace(NOT_TYPED, "");
  const token = form.elements.reporter_token.value.replace(NOT_TYPED, "");
  // Another report, or another token, asked for: the one shown goes first. Session 32: when the lookup then failed
  // (no connection, a 5xx), the page went on showing the report before, with its forms, under the number and token
  // just typed; what the reporter then wrote for the report they asked for was sent to that one, with its token.
  if (tracked.report && (trackingId !== tracked.asked || token !== tracked.token)) forgetReport();
  if (!trackingId) {
    text("lacak-error", "Isi nomor pelacakan.");
    return;
  }
  if (!TOKEN.test(token)) {
    document.getElementById("actions").hidden = true;
    tracked.token = "";
    text("lacak-error", "Token pelapor hanya berisi huruf, angka, tanda - dan _. Periksa token yang Anda simpan.");
    return;
  }
  const headers = token ? { "X-Reporter-Token": token } : {};
  const response = await reached("/api/complaints/" + encodeURIComponent(trackingId), { headers }, "lacak-error");
  if (!response) return;
  const section = document.getElementById("report");
  if (!response.ok) {
    section.hidden = true;
    document.getElementById("actions").hidden = true;
    text("lacak-error", response.status === 404
      ? "Laporan tidak ditemukan. Periksa nomor pelacakan (dan token pelapor untuk laporan rahasia)."
      : (await problemOf(response)).detail);
    return;
  }
  const report = await response.json();
  tracked.report = report;
  tracked.token = token;
  tracked.asked = trackingId;
  text("report-title", report.title || "(laporan)");
  text("report-id", report.tracking_id);
  text("report-status", STATUS[report.status] || report.status);
  text("report-agency", report.agency_name || report.agency_id || "Belum diteruskan ke instansi");
  text("report-region", report.region_name || report.region_code || "—");
  text("report-submitted", moment(report.submitted_at));
  const list = dated("report-follow-ups", (report.follow_ups || []).map((item) => [item.posted_at, item.text]));
  if (!list.children.length) {
    const item = document.createElement("li");
    item.textContent = "Belum ada tindak lanjut.";
    list.append(item);
  }
  text("report-resolution", report.resolution ? "Hasil: " + report.resolution : "");
  // What the reporter sent, so that one whose answer was lost can see it arrived (the form it went with is gone).
  const information = dated("report-information", (report.information || []).map(
    (item) => [item.provided_at, "Informasi tambahan: " + item.text]));
  const feedback = report.feedback;
  text("report-feedback", feedback ? `Tanggapan atas tindak lanjut: ${feedback.satisfied ? "puas" : "tidak puas"}, `
    + `penilaian ${feedback.rating} dari 5` + (feedback.comment ? ` — ${feedback.comment}` : ".") : "");
  document.getElementById("report-from-reporter").hidden = !information.children.length && !feedback;
  section.hidden = false;
  showActions(report, token);
  return true;
}

// The list `id` holds one item per [moment, text], each the moment then the text (as text, never as HTML).
function dated(id, entries) {
  const list = document.getElementById(id);
  list.replaceChildren();
  for (const [at, said] of entries) {
    const item = document.createElement("li");
    const when = document.createElement("time");
    when.dateTime = at;
    when.textContent = moment(at);
    item.append(when, " — ", said);
    list.append(item);
  }
  return list;
}

// What the reporter can do now (the view's `reporter_actions`), offered only to whoever gave the report's token.
function showActions(report, token) {
  const actions = token ? report.reporter_actions || [] : [];
  document.getElementById("information-form").hidden = !actions.includes("information");
  document.getElementById("feedback-form").hidden = !actions.includes("feedback");
  document.getElementById("consent-form").hidden = !actions.includes("ombudsman-consent");
  text("information-requested", report.information_requested || "");
  document.getElementById("actions").hidden = actions.length === 0;
}

const ACTION_FIELDS = ["text", "comment"];  // what the reporter's action forms may be told about

// One reporter action: sent with the token and If-Match (the version the reporter saw), then the report again.
// Its form's button is off meanwhile: a second click would send it again on the version the first moved on (412);
// once sent, the form is emptied (a later request for information must not find the last answer in it).
async function act(trackForm, actionForm, action, body, done) {
  const button = actionForm.querySelector("button");
  if (button.disabled) return;
  button.disabled = true;
  try {
    if (await sendAction(trackForm, action, body, done)) actionForm.reset();  // sent: not to be sent again
  } finally {
    button.disabled = false;
  }
}

async function sendAction(trackForm, action, body, done) {
  text("action-error", "");
  text("action-result", "");
  markFields(ACTION_FIELDS, {});
  const report = tracked.report;
  const response = await reached(`/api/complaints/${encodeURIComponent(report.tracking_id)}/${action}`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-Reporter-Token": tracked.token,
      "If-Match": `"${report.version}"`,
    },
    body: JSON.stringify(body),
  }, "action-error", "Tidak ada jawaban dari server: mungkin sudah terkirim, mungkin belum. Periksa sambungan "
    + "internet Anda, lalu lacak laporan ini lagi untuk melihatnya.");
  if (!response) return false;
  if (!response.ok) {
    const problem = await problemOf(response);
    // A public report opens without its token, so a mistyped token shows the report and its forms: refused here.
    const said = {
      401: "Token pelapor tidak cocok dengan laporan ini. Periksa token yang Anda simpan, lalu lacak lagi.",
      412: "Laporan ini sudah berubah sejak Anda membukanya: lacak lagi untuk melihat keadaannya sekarang.",
    };
    text("action-error", said[response.status] || problem.detail);
    markFields(ACTION_FIELDS, problem.fields);
    return false;
  }
  await track(trackForm);
  text("action-result", done);
  return true;
}

function setupTrackForm(form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // The report found takes the focus: its section appears already filled, which a screen reader does not read.
    if (await track(form)) document.getElementById("report-title").focus();
  });
  document.getElementById("information-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const information = event.target.elements.text.value.trim();
    act(form, event.target, "information", { text: information }, "Informasi tambahan terkirim.");
  });
  document.getElementById("feedback-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const fields = event.target.elements;
    const feedback = { satisfied: fields.satisfied.value === "true", rating: Number(fields.rating.value) };
    if (fields.comment.value.trim()) feedback.comment = fields.comment.value.trim();
    act(form, event.target, "feedback", feedback, "Tanggapan Anda terkirim. Terima kasih.");
  });
  document.getElementById("consent-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act(form, event.target, "ombudsman-consent", {}, "Persetujuan Anda terkirim kepada Ombudsman.");
  });
  // /lacak#<tracking id>, as the receipt links it: the id never reaches the server's logs. Following another such
  // link from this page changes only the fragment, so that is watched too.
  const fromLink = () => {
    let trackingId = "";
    try {
      trackingId = decodeURIComponent(location.hash.slice(1));
    } catch (error) {  // a link cut short ("#%E0%A4%A"): nothing to look up
      text("lacak-error", "Tautan ini tidak memuat nomor pelacakan yang utuh. Isi nomornya di bawah.");
      return;
    }
    if (trackingId) {
      form.elements.tracking_id.value = trackingId;
      form.elements.reporter_token.value = "";
      forgetReport();  // nothing written for the report shown before is offered on this one
      track(form);
    }
  };
  window.addEventListener("hashchange", fromLink);
  // Leaving the page, the token and the report it opened are forgotten (see setupReportForm's "pagehide").
  window.addEventListener("pagehide", () => {
    form.elements.reporter_token.value = "";
    forgetReport();
  });
  fromLink();
}

function forgetReport() {
  tracked.report = null;
  tracked.token = "";
  tracked.asked = "";
  for (const id of ["report-title", "report-id", "report-status", "report-agency", "report-region",
    "report-submitted", "report-resolution", "report-feedback", "information-requested", "action-result",
    "action-error"]) text(id, "");
  document.getElementById("report-follow-ups").replaceChildren();
  document.getElementById("report-information").replaceChildren();
  document.getElementById("report-from-reporter").hidden = true;
  for (const actionForm of document.querySelectorAll("#actions form")) actionForm.reset();
  document.getElementById("report").hidden = true;
  document.getElementById("actions").hidden = true;
}

// -- the public statistics (/statistik): GET /api/public/statistics, as tables -------------------------------

const STAGES = { verification: "Verifikasi (telaah)", follow_up: "Tindak lanjut" };
// The API's own names for the categories it groups (reporting's OTHER_CATEGORY, and a report without one).
const CATEGORIES = { "(other)": "(lainnya)", "(none)": "(tanpa kategori)" };

function percent(value) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1).replace(".", ",")}%`;
}

function days(hours) {
  return hours === null || hours === undefined ? "—" : `${(hours / 24).toFixed(1).replace(".", ",")} hari`;
}

function rows(bodyId, lines) {
  const body = document.getElementById(bodyId);
  body.replaceChildren();
  for (const cells of lines) {
    const row = document.createElement("tr");
    cells.forEach((value, index) => {
      const cell = document.createElement("td");
      cell.textContent = typeof value === "number" ? value.toLocaleString("id-ID") : String(value);
      if (index > 0) cell.className = "number";
      row.append(cell);
    });
    body.append(row);
  }
}

async function showStatistics(form) {
  text("statistik-error", "");
  if (form.elements.from.value && form.elements.to.value && form.elements.from.value > form.elements.to.value) {
    text("statistik-error", "Tanggal awal harus sebelum atau sama dengan tanggal akhir.");
    return;
  }
  const query = new URLSearchParams();
  for (const name of ["from", "to", "region"]) {
    const value = form.elements[name].value;
    if (value) query.set(name, value);
  }
  const search = query.toString();  // not query.size: Safari has it from 17 (iOS 16 phones stay without)
  const response = await reached("/api/public/statistics" + (search ? "?" + search : ""), {}, "statistik-error");
  if (!response) return;
  const section = document.getElementById("statistik");
  if (!response.ok) {
    section.hidden = true;
    text("statistik-error", (await problemOf(response)).detail);
    return;
  }
  const stats = await response.json();
  const applied = stats.filters;
  text("stat-applied", `Periode ${applied.from || "awal"} sampai ${applied.to || "sekarang"}, `
    + `wilayah ${applied.region || "seluruh Indonesia"}; ${stats.cells.shown} sel ditampilkan, `
    + `${stats.cells.withheld} tidak ditampilkan.`);
  document.getElementById("stat-withheld").hidden = !stats.withheld;
  document.getElementById("stat-figures").hidden = stats.withheld;
  if (!stats.withheld) {
    for (const total of ["reports", "open", "closed", "archived"]) {
      text(`stat-${total}`, stats.totals[total].toLocaleString("id-ID"));
    }
    text("stat-follow-up-rate", percent(stats.follow_up_rate));
    const time = stats.time_to_first_follow_up;
    text("stat-time", time ? `${days(time.median_hours)} / ${days(time.p90_hours)}` : "—");
    rows("stat-sla", stats.sla.map((stage) => [STAGES[stage.stage] || stage.stage, stage.deadline_working_days,
      stage.on_time, stage.late, stage.overdue, percent(stage.compliance)]));
    rows("stat-monthly", stats.monthly.map((month) => [month.month, month.received, month.disposed,
      month.followed_up]));
    rows("stat-categories", Object.entries(stats.breakdown.by_category).sort((a, b) => b[1] - a[1])
      .map(([category, count]) => [CATEGORIES[category] || category, count]));
  }
  section.hidden = false;
}

function setupStatisticsForm(form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    showStatistics(form);
  });
  showStatistics(form);
}

document.addEventListener("DOMContentLoaded", () => {
  const reportForm = document.getElementById("lapor-form");
  if (reportForm) setupReportForm(reportForm);
  const trackForm = document.getElementById("lacak-form");
  if (trackForm) setupTrackForm(trackForm);
  const statisticsForm = document.getElementById("statistik-form");
  if (statisticsForm) setupStatisticsForm(statisticsForm);
  // The pages' buttons come disabled: a form the browser sent itself, before this script (or without it), went
  // as GET, its fields (the reporter token, the reporter's name and phone) in the address.
  for (const form of [reportForm, trackForm, statisticsForm]) if (form) form.querySelector("button").disabled = false;
  // The page says it needs this script until the script has set it up: a script that never arrived (a connection
  // dropped) or that the browser could not run (an old phone's) left the buttons off with nothing said (session 32;
  // a <noscript> line spoke only where scripts are off).
  document.getElementById("script-needed").hidden = true;
});
