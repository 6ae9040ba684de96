// natter web UI: plain JavaScript, no build step. Protocol: DESIGN.md "WebSocket protocol".
//
// Invariants the code below keeps:
//  * a room's messages are keyed by seq, so replays and retries never show twice,
//    and they are inserted in seq order wherever they arrive from;
//  * room.lastSeq only advances on `message` frames (never on acks), so a resume
//    with `since` cannot skip a message that was stored but not yet delivered;
//  * every send carries a client id; unacked sends are resent with the same id
//    after a reconnect, and the gateway (Nats-Msg-Id) stores them once.
"use strict";

(() => {
  const HISTORY_N = 50; // messages asked for on a first join and per scroll-back page
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 15000;
  const STABLE_MS = 5000; // a connection this old resets the backoff
  const CONNECT_TIMEOUT_MS = 10000; // socket open + welcome
  const ACK_RESEND_MS = 15000; // backstop: resend a send still unacked after this
  const TYPING_SEND_MS = 3000;
  const TYPING_SHOW_MS = 5000;
  const NICK_KEY = "natter.nick";
  const PERMANENT_SEND_ERRORS = new Set(["too_large", "bad_request", "forbidden", "unknown_room"]);

  const el = (testid) => document.querySelector(`[data-testid="${testid}"]`);
  const ui = {
    status: el("connection-status"),
    whoami: el("whoami"),
    changeNick: el("change-nick"),
    roomList: el("room-list"),
    roomsError: el("rooms-error"),
    roomTitle: el("room-title"),
    roomTopic: el("room-topic"),
    scroller: el("message-scroller"),
    slot: document.querySelector(".messages-slot"),
    loadOlder: el("load-older"),
    historyStart: el("history-start"),
    emptyHint: el("empty-hint"),
    typing: el("typing-indicator"),
    composerForm: el("composer-form"),
    composer: el("composer"),
    sendButton: el("send-button"),
    errors: el("errors"),
    nickDialog: el("nick-dialog"),
    nickForm: el("nick-form"),
    nickInput: el("nick-input"),
    nickError: el("nick-error"),
    loginForm: el("login-form"),
    loginUser: el("login-user"),
    loginPassword: el("login-password"),
    loginError: el("login-error"),
  };

  const state = {
    nick: null, // what hello says
    user: null, // what welcome confirmed
    node: null,
    ws: null,
    connected: false, // welcome received on state.ws
    helloRejected: false,
    attempt: 0,
    reconnectTimer: null,
    connectTimer: null,
    stableTimer: null,
    roomInfo: new Map(), // name -> entry of GET /api/rooms
    rooms: new Map(), // name -> Room, every room this page has joined
    active: null, // Room shown
    auth: "open", // GET /api/auth: "open" (nickname) or "jwt" (log in, hello {token})
    token: null, // access token in jwt mode
    refreshTimer: null,
  };

  // ---------------------------------------------------------------- helpers

  function newId() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b); // unlike randomUUID, also works outside secure contexts
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return null;
    }
  }

  function storageSet(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch {
      /* private mode: the nickname is just not remembered */
    }
  }

  function make(tag, props = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") node.className = v;
      else if (k === "testid") node.dataset.testid = v;
      else node.setAttribute(k, v);
    }
    if (text !== undefined) node.textContent = text; // never innerHTML with user data
    return node;
  }

  function formatTime(ts) {
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return "";
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function toast(text) {
    const t = make("div", { class: "toast", testid: "error-toast", role: "alert" }, text);
    ui.errors.appendChild(t);
    setTimeout(() => t.remove(), 6000);
    while (ui.errors.children.length > 4) ui.errors.firstChild.remove();
  }

  // ---------------------------------------------------------------- rooms

  class Room {
    constructor(name) {
      this.name = name;
      this.lastSeq = null; // highest seq a `message` frame delivered: the next `since`
      this.seqs = []; // stored seqs shown, ascending
      this.bySeq = new Map(); // seq -> <li>
      this.pending = new Map(); // client id -> {id, text, el, sentAt, retryTimer}
      this.ready = false; // `joined` received on the current connection
      this.joinSent = false;
      this.hasMore = true; // older messages may exist
      this.loadingOlder = false;
      this.unread = 0;
      this.typing = new Map(); // user -> timer
      this.lastTypingSent = 0;
      this.scrollTop = null; // remembered while another room is shown
      this.list = make("ul", { class: "messages", testid: "message-list", "data-room": name });
    }

    get oldestSeq() {
      return this.seqs.length ? this.seqs[0] : null;
    }

    // Insert a stored message's element at its seq position, before unstored ones.
    placeStored(seq, li) {
      let lo = 0;
      let hi = this.seqs.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.seqs[mid] < seq) lo = mid + 1;
        else hi = mid;
      }
      this.seqs.splice(lo, 0, seq);
      this.bySeq.set(seq, li);
      const next =
        lo + 1 < this.seqs.length
          ? this.bySeq.get(this.seqs[lo + 1])
          : this.list.querySelector(":scope > .unstored");
      this.list.insertBefore(li, next || null);
    }
  }

  function fillMessage(li, m) {
    li.replaceChildren();
    li.dataset.user = m.user || "";
    li.dataset.ts = m.ts || "";
    li.classList.toggle("mine", Boolean(state.user) && m.user === state.user);
    li.classList.toggle("bridged", Boolean(m.source));
    const meta = make("div", { class: "meta" });
    meta.append(make("span", { class: "user", testid: "message-user" }, m.user || state.nick || ""));
    if (m.source) {
      li.dataset.source = m.source;
      meta.append(
        make("span", { class: "source", testid: "message-source", title: `bridged from ${m.source}` }, m.source),
      );
    }
    const time = make("time", { testid: "message-time" }, m.ts ? formatTime(m.ts) : "");
    if (m.ts) {
      time.setAttribute("datetime", m.ts);
      time.title = new Date(m.ts).toLocaleString();
    }
    meta.append(time, make("span", { class: "state", testid: "message-state", "aria-hidden": "true" }));
    li.append(meta, make("div", { class: "text", testid: "message-text" }, m.text ?? ""));
    const err = make("div", { class: "error", testid: "message-error" });
    err.hidden = true;
    li.append(err);
  }

  function setMessageState(li, s) {
    li.dataset.state = s; // sending | stored | failed
    li.classList.toggle("unstored", s !== "stored");
    const mark = li.querySelector(".state");
    if (mark) {
      mark.textContent = s === "sending" ? "sending…" : s === "failed" ? "not sent" : "";
      li.title = s === "stored" && li.dataset.seq ? `#${li.dataset.seq}` : "";
    }
  }

  function storedMessage(room, m) {
    const li = make("li", { class: "msg", testid: "message" });
    li.dataset.seq = String(m.seq);
    li.dataset.id = m.id || "";
    fillMessage(li, m);
    setMessageState(li, "stored");
    room.placeStored(m.seq, li);
    return li;
  }

  // A message the server delivered (live, replay or history page). Returns true if new.
  function receive(room, m, { live }) {
    const seq = Number(m.seq);
    if (!Number.isFinite(seq)) return false;
    m.seq = seq;
    if (live && (room.lastSeq === null || seq > room.lastSeq)) room.lastSeq = seq;
    const known = room.bySeq.get(seq);
    if (known) {
      // Replayed; or our own message, placed by its ack: now it gets the server's ts.
      if (!known.dataset.ts && m.ts) {
        fillMessage(known, m);
        setMessageState(known, "stored");
      }
      return false;
    }
    const mine = m.id ? room.pending.get(m.id) : undefined;
    if (mine) {
      // Our own message came back before its ack: promote the pending element.
      settlePending(room, mine);
      mine.el.dataset.seq = String(seq);
      fillMessage(mine.el, m);
      setMessageState(mine.el, "stored");
      room.placeStored(seq, mine.el);
    } else {
      storedMessage(room, m);
      if (live && room !== state.active) room.unread += 1;
    }
    if (live) stopTyping(room, m.user);
    return true;
  }

  function settlePending(room, p) {
    clearTimeout(p.retryTimer);
    room.pending.delete(p.id);
  }

  function onAck(f) {
    const room = state.rooms.get(f.room);
    if (!room) return;
    const p = room.pending.get(f.id);
    if (!p) return; // its message frame came first
    settlePending(room, p);
    const seq = Number(f.seq);
    p.el.dataset.seq = String(seq);
    setMessageState(p.el, "stored");
    if (!room.bySeq.has(seq)) {
      withScroll(room, () => room.placeStored(seq, p.el), { stick: true });
    } else {
      p.el.remove(); // the same seq is already on screen
    }
  }

  // ---------------------------------------------------------------- scrolling

  function nearBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  // Run a DOM change; keep the view pinned to the bottom if it was there
  // (or if stick), else keep what the reader was looking at in place.
  function withScroll(room, fn, { stick = false, prepend = false } = {}) {
    if (room !== state.active) return fn();
    const s = ui.scroller;
    const atBottom = stick || nearBottom();
    const fromBottom = s.scrollHeight - s.scrollTop;
    const result = fn();
    if (atBottom && !prepend) s.scrollTop = s.scrollHeight;
    else if (prepend) s.scrollTop = s.scrollHeight - fromBottom;
    return result;
  }

  // ---------------------------------------------------------------- socket

  function wsUrl() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return `${proto}//${location.host}/ws`;
  }

  function wsSend(frame) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  function setStatus(s, label) {
    ui.status.dataset.state = s; // connecting | connected | reconnecting | offline
    ui.status.querySelector(".label").textContent = label || s;
    ui.status.title = state.node != null ? `gateway worker ${state.node}` : "";
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (!state.nick || state.helloRejected) return;
    if (state.ws) return;
    setStatus(state.attempt ? "reconnecting" : "connecting", state.attempt ? "reconnecting…" : "connecting…");
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.connectTimer = setTimeout(() => ws.close(), CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      if (ws === state.ws) wsSend(helloFrame());
    };
    ws.onmessage = (ev) => {
      if (ws === state.ws) onData(ev.data);
    };
    ws.onclose = () => {
      if (ws === state.ws) onDisconnect();
    };
  }

  function onDisconnect() {
    clearTimeout(state.connectTimer);
    clearTimeout(state.stableTimer);
    state.ws = null;
    state.connected = false;
    for (const room of state.rooms.values()) {
      room.ready = false;
      room.joinSent = false;
      room.loadingOlder = false;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (state.reconnectTimer || state.ws) return;
    if (state.helloRejected) {
      setStatus("offline", "offline");
      return;
    }
    if (navigator.onLine === false) {
      setStatus("offline", "offline"); // the `online` event reconnects
      return;
    }
    // Exponential backoff with full jitter, at least 100 ms.
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** state.attempt);
    const delay = 100 + Math.random() * ceiling;
    state.attempt += 1;
    setStatus("reconnecting", `reconnecting in ${Math.ceil(delay / 1000)}s…`);
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (state.ws) return;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    connect();
  }

  function onData(data) {
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      return;
    }
    const frames = Array.isArray(parsed) ? parsed : [parsed]; // the gateway may batch
    for (const f of frames) {
      if (f && typeof f === "object") {
        try {
          onFrame(f);
        } catch (e) {
          console.error("natter: bad frame", f, e);
        }
      }
    }
  }

  function onFrame(f) {
    switch (f.type) {
      case "welcome":
        return onWelcome(f);
      case "joined":
        return onJoined(f);
      case "message":
        return onMessage(f);
      case "ack":
        return onAck(f);
      case "history":
        return onHistory(f);
      case "typing":
        return onTyping(f);
      case "error":
        return onError(f);
      default:
        return undefined; // left, and kinds added later
    }
  }

  function onWelcome(f) {
    clearTimeout(state.connectTimer);
    state.connected = true;
    state.user = f.user || state.nick;
    state.node = f.node ?? null;
    ui.status.dataset.node = state.node != null ? String(state.node) : "";
    ui.whoami.textContent = state.user;
    ui.whoami.hidden = false;
    ui.changeNick.hidden = false;
    hideNickDialog();
    setStatus("connected", "connected");
    state.stableTimer = setTimeout(() => {
      state.attempt = 0;
    }, STABLE_MS);
    for (const room of state.rooms.values()) sendJoin(room);
    loadRooms();
  }

  function sendJoin(room) {
    if (!state.connected || room.joinSent) return;
    const frame = { type: "join", room: room.name };
    if (room.lastSeq !== null) frame.since = room.lastSeq;
    else frame.history = HISTORY_N;
    room.joinSent = wsSend(frame);
  }

  function onJoined(f) {
    const room = state.rooms.get(f.room);
    if (!room) return;
    room.ready = true;
    if (room.lastSeq === null) {
      // First join: the replay holds (at most) the latest HISTORY_N. Resuming
      // from there can only repeat messages (dropped by seq), never skip one.
      const last = Number(f.last_seq) || 0;
      room.lastSeq = Math.max(0, last - HISTORY_N);
      if (last === 0) room.hasMore = false;
    }
    for (const p of room.pending.values()) transmit(room, p);
    if (room === state.active) renderHistoryControls(room);
  }

  function onMessage(f) {
    const room = state.rooms.get(f.room);
    if (!room) return;
    withScroll(room, () => receive(room, f, { live: true }));
    if (room === state.active) {
      renderHistoryControls(room);
      renderTyping(room);
    } else renderRoomList();
  }

  function onHistory(f) {
    const room = state.rooms.get(f.room);
    if (!room) return;
    room.loadingOlder = false;
    const msgs = Array.isArray(f.messages) ? f.messages : [];
    let added = 0;
    withScroll(
      room,
      () => {
        for (const m of msgs) if (receive(room, { ...m, room: room.name }, { live: false })) added += 1;
      },
      { prepend: true },
    );
    if (msgs.length === 0 || added === 0 || room.oldestSeq === 1) room.hasMore = false;
    if (room === state.active) renderHistoryControls(room);
  }

  function loadOlder(room) {
    if (!room || !room.ready || room.loadingOlder || !room.hasMore) return;
    const before = room.oldestSeq;
    if (before === null || before <= 1) {
      room.hasMore = false;
      renderHistoryControls(room);
      return;
    }
    room.loadingOlder = wsSend({ type: "history", room: room.name, before, limit: HISTORY_N });
    renderHistoryControls(room);
  }

  function onError(f) {
    const code = f.code || "error";
    const text = f.message || code;
    if (f.ref) {
      for (const room of state.rooms.values()) {
        const p = room.pending.get(f.ref);
        if (p) return onSendError(room, p, code, text, f);
      }
    }
    if (!state.connected) {
      // hello was refused: ask again rather than hammer the gateway with it
      state.helloRejected = true;
      state.nick = null;
      if (state.auth === "jwt") showLogin(text);
      else showNickDialog(text);
      if (state.ws) state.ws.close();
      return;
    }
    if (code === "unknown_room") {
      for (const room of state.rooms.values()) {
        if (room.joinSent && !room.ready) {
          dropRoom(room);
          toast(`${room.name}: ${text}`);
          return;
        }
      }
    }
    toast(`${code}: ${text}`);
  }

  function onSendError(room, p, code, text, f) {
    if (PERMANENT_SEND_ERRORS.has(code)) {
      settlePending(room, p);
      setMessageState(p.el, "failed");
      const err = p.el.querySelector(".error");
      err.textContent = code === "too_large" ? `Not sent: too large (${text})` : `Not sent: ${text}`;
      err.hidden = false;
      p.el.dataset.error = code;
      return;
    }
    // rate_limited / unavailable: try again later with the same id
    const wait = code === "rate_limited" && f.retry_after ? Number(f.retry_after) * 1000 : 1000;
    clearTimeout(p.retryTimer);
    p.retryTimer = setTimeout(() => transmit(room, p), wait + Math.random() * 500);
  }

  // ---------------------------------------------------------------- sending

  function transmit(room, p) {
    if (!room.ready) return; // resent after the next `joined`
    if (wsSend({ type: "send", room: room.name, id: p.id, text: p.text })) p.sentAt = Date.now();
  }

  function sendText(text) {
    const room = state.active;
    if (!room || !text.trim()) return;
    const id = newId();
    const li = make("li", { class: "msg mine", testid: "message" });
    li.dataset.id = id;
    fillMessage(li, { id, user: state.user || state.nick, text, ts: null });
    li.classList.add("mine");
    setMessageState(li, "sending");
    const p = { id, text, el: li, sentAt: 0, retryTimer: null };
    room.pending.set(id, p);
    withScroll(room, () => room.list.appendChild(li), { stick: true });
    transmit(room, p);
  }

  setInterval(() => {
    const now = Date.now();
    for (const room of state.rooms.values()) {
      for (const p of room.pending.values()) {
        if (p.sentAt && now - p.sentAt > ACK_RESEND_MS) transmit(room, p);
      }
    }
  }, 2000);

  // ---------------------------------------------------------------- typing

  function onTyping(f) {
    const room = state.rooms.get(f.room);
    if (!room || !f.user || f.user === state.user) return;
    clearTimeout(room.typing.get(f.user));
    room.typing.set(
      f.user,
      setTimeout(() => stopTyping(room, f.user), TYPING_SHOW_MS),
    );
    if (room === state.active) renderTyping(room);
  }

  function stopTyping(room, user) {
    if (!room.typing.has(user)) return;
    clearTimeout(room.typing.get(user));
    room.typing.delete(user);
    if (room === state.active) renderTyping(room);
  }

  function renderTyping(room) {
    const names = [...room.typing.keys()];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    ui.typing.textContent = text;
  }

  // ---------------------------------------------------------------- rendering

  function renderHistoryControls(room) {
    const showStart = !room.hasMore && room.ready && room.seqs.length > 0;
    ui.historyStart.hidden = !showStart;
    ui.loadOlder.hidden = !(room.hasMore && room.seqs.length > 0 && (room.oldestSeq ?? 0) > 1);
    ui.loadOlder.disabled = room.loadingOlder;
    ui.loadOlder.textContent = room.loadingOlder ? "Loading…" : "Load older messages";
  }

  function renderRoomList() {
    const names = new Set([...state.roomInfo.keys(), ...state.rooms.keys()]);
    const items = [];
    for (const name of [...names].sort()) {
      const info = state.roomInfo.get(name) || { name };
      const room = state.rooms.get(name);
      const li = make("li");
      const b = make("button", { type: "button", class: "room-button", testid: `room-${name}` });
      b.dataset.room = name;
      if (state.active && state.active.name === name) {
        b.classList.add("active");
        b.setAttribute("aria-current", "true");
      }
      b.append(make("span", { class: "room-name" }, `# ${info.displayName || name}`));
      if (room && room.unread > 0 && room !== state.active) {
        b.append(make("span", { class: "badge", testid: `unread-${name}` }, String(room.unread)));
      }
      if (info.topic) b.append(make("span", { class: "room-topic" }, info.topic));
      li.append(b);
      items.push(li);
    }
    ui.roomList.replaceChildren(...items);
  }

  async function loadRooms() {
    try {
      const r = await fetch("/api/rooms", { headers: authHeaders({ Accept: "application/json" }) });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const body = await r.json();
      const list = Array.isArray(body) ? body : body.rooms || [];
      state.roomInfo = new Map(list.map((x) => [x.name, x]));
      ui.roomsError.hidden = true;
    } catch (e) {
      ui.roomsError.textContent = `Could not load rooms (${e.message}).`;
      ui.roomsError.hidden = false;
    }
    renderRoomList();
    if (state.active) renderHeader(state.active);
  }

  function renderHeader(room) {
    const info = state.roomInfo.get(room.name) || {};
    ui.roomTitle.textContent = `# ${info.displayName || room.name}`;
    ui.roomTopic.textContent = info.topic || "";
  }

  function openRoom(name) {
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) return;
    if (state.active && state.active.name === name) return;
    if (state.active) state.active.scrollTop = nearBottom() ? null : ui.scroller.scrollTop;
    let room = state.rooms.get(name);
    if (!room) {
      room = new Room(name);
      state.rooms.set(name, room);
      sendJoin(room);
    }
    state.active = room;
    room.unread = 0;
    ui.slot.replaceChildren(room.list);
    ui.emptyHint.hidden = true;
    ui.composer.disabled = false;
    ui.sendButton.disabled = false;
    ui.composer.placeholder = `Message #${name} — Enter to send, Shift+Enter for a new line`;
    renderHeader(room);
    renderTyping(room);
    renderHistoryControls(room);
    renderRoomList();
    ui.scroller.scrollTop = room.scrollTop ?? ui.scroller.scrollHeight;
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    ui.composer.focus();
  }

  function dropRoom(room) {
    state.rooms.delete(room.name);
    if (state.active === room) {
      state.active = null;
      ui.slot.replaceChildren();
      ui.emptyHint.hidden = false;
      ui.composer.disabled = true;
      ui.sendButton.disabled = true;
      ui.roomTitle.textContent = "Pick a room";
      ui.roomTopic.textContent = "";
      history.replaceState(null, "", location.pathname);
    }
    renderRoomList();
  }

  // ---------------------------------------------------------------- nickname

  function showNickDialog(error) {
    ui.nickDialog.hidden = false;
    ui.nickError.textContent = error || "";
    ui.nickError.hidden = !error;
    ui.nickInput.value = ui.nickInput.value || storageGet(NICK_KEY) || "";
    ui.nickInput.focus();
  }

  function hideNickDialog() {
    ui.nickDialog.hidden = true;
  }

  function start(nick) {
    state.nick = nick;
    state.helloRejected = false;
    state.attempt = 0;
    storageSet(NICK_KEY, nick);
    if (state.ws) state.ws.close();
    else connect();
  }

  // ---------------------------------------------------------------- events

  ui.nickForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const nick = ui.nickInput.value.trim();
    if (!nick || !ui.nickInput.checkValidity()) {
      showNickDialog("1–32 letters, digits, _ . or -");
      return;
    }
    if (state.user && nick !== state.user) {
      // A new identity: start over cleanly rather than mix two users' state.
      storageSet(NICK_KEY, nick);
      location.reload();
      return;
    }
    hideNickDialog();
    if (state.connected && nick === state.user) return;
    start(nick);
  });

  ui.changeNick.addEventListener("click", () => showNickDialog());

  ui.roomList.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-room]");
    if (b) openRoom(b.dataset.room);
  });

  ui.composerForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = ui.composer.value;
    if (!text.trim()) return;
    ui.composer.value = "";
    autosize();
    sendText(text);
  });

  ui.composer.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      ui.composerForm.requestSubmit();
    }
  });

  function autosize() {
    ui.composer.style.height = "auto";
    ui.composer.style.height = `${Math.min(ui.composer.scrollHeight, 160)}px`;
  }

  ui.composer.addEventListener("input", () => {
    autosize();
    const room = state.active;
    if (!room || !room.ready || !ui.composer.value) return;
    const now = Date.now();
    if (now - room.lastTypingSent > TYPING_SEND_MS) {
      room.lastTypingSent = now;
      wsSend({ type: "typing", room: room.name });
    }
  });

  ui.loadOlder.addEventListener("click", () => loadOlder(state.active));
  ui.scroller.addEventListener("scroll", () => {
    if (ui.scroller.scrollTop < 40) loadOlder(state.active);
  });

  window.addEventListener("online", reconnectNow);
  window.addEventListener("offline", () => {
    if (!state.connected) setStatus("offline", "offline");
  });
  window.addEventListener("hashchange", () => {
    const name = decodeURIComponent(location.hash.slice(1));
    if (name) openRoom(name);
  });

  // ---------------------------------------------------------------- boot

  // ---------------------------------------------------------------- login (NATTER_AUTH=jwt)

  function helloFrame() {
    return state.token ? { type: "hello", token: state.token } : { type: "hello", user: state.nick };
  }

  function authHeaders(headers) {
    return state.token ? { ...headers, Authorization: `Bearer ${state.token}` } : headers;
  }

  function showLogin(error) {
    ui.nickDialog.hidden = false;
    ui.nickForm.hidden = true;
    ui.loginForm.hidden = false;
    ui.changeNick.hidden = true;
    ui.loginError.textContent = error || "";
    ui.loginError.hidden = !error;
    ui.loginUser.focus();
  }

  async function tokens(path, body) {
    const r = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(answer.detail || `HTTP ${r.status}`);
    return answer;
  }

  function useTokens(answer) {
    state.token = answer.token;
    clearTimeout(state.refreshTimer);
    // Refresh at 80% of the access token's life; re-say hello so the socket stays open.
    state.refreshTimer = setTimeout(async () => {
      try {
        useTokens(await tokens("/api/refresh", { refresh_token: answer.refresh_token }));
        if (state.connected) wsSend(helloFrame());
      } catch (e) {
        showLogin(`Signed out: ${e.message}`);
      }
    }, answer.expires_in * 800);
  }

  ui.loginForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const answer = await tokens("/api/login", {
        user: ui.loginUser.value.trim(),
        password: ui.loginPassword.value,
      });
      ui.loginPassword.value = "";
      useTokens(answer);
      hideNickDialog();
      start(answer.user);
      loadRooms();
    } catch (e) {
      showLogin(e.message);
    }
  });

  async function boot() {
    try {
      const r = await fetch("/api/auth", { headers: { Accept: "application/json" } });
      if (r.ok) state.auth = (await r.json()).mode || "open";
    } catch {
      // an older gateway without /api/auth: open mode
    }
    const initialRoom = decodeURIComponent(location.hash.slice(1));
    if (state.auth === "jwt") {
      showLogin();
      if (initialRoom) openRoom(initialRoom);
      return;
    }
    const saved = storageGet(NICK_KEY);
    loadRooms();
    if (initialRoom) openRoom(initialRoom);
    if (saved) start(saved);
    else showNickDialog();
  }

  boot();
})();
