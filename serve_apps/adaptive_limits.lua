-- Adaptive in-flight limits and queue room for the Ray Serve replicas behind this HAProxy.
--
-- Loaded by serve_apps/haproxy_wrapper.py (`lua-load`) with one argument per application backend:
--   <backend>,<maxconn>,<queue_ms>,<maxqueue>,<target_ms>,<held>
--
-- A replica's requests take as long as the requests in flight in it divided by the rate at which it finishes them
-- (Little's law). A fixed limit in flight therefore makes each request slower whenever the replica gets less CPU: 32 in
-- flight on a replica that a flood left 130 finished requests a second spend ~250 ms in it. So every TICK_MS this task
-- asks whether the backend turned requests away (refused them for want of room, let them time out in its queue, or had
-- them shed by a replica past their budget). If it did, each replica's limit becomes as many requests as it finishes
-- in target_ms at the best rate it finished them at lately (at least MIN_LIMIT), and the queue takes a request only if
-- the replicas can take it up within queue_ms - 2 x target_ms (HAProxy's timeout queue is the same), so that an
-- accepted request is answered within about queue_ms: target_ms is a request's mean time in a replica, and about half
-- its 99th percentile (README, Reliability); others are refused at once, but only once a replica holds `held` requests,
-- in flight and queued (its autoscaling target): clients that would all fit the deployment as sized, but retry at once
-- when refused, would otherwise keep a slowed replica slow with their refusals long after what slowed it is gone.
-- Meanwhile the queue is taken newest first (Facebook's adaptive LIFO): a request that has waited long would be late
-- however it is served, and is better refused by the queue's timeout than served ahead of one still on time. Once
-- nothing was turned away for QUIET_TICKS, or for CALM_TICKS nothing was refused at once and the backend held no more
-- requests than its replicas answer in queue_ms (a slowed replica whose few clients time out in the queue only
-- because of its limit), the load fits: a limit holds back nothing, or clients that are as slow waiting here as in
-- the replica (which batches more of them at once), and it doubles back up to maxconn (the deployment's
-- max_ongoing_requests), the queue to maxqueue, and its order is first come, first served again.
-- target_ms 0 keeps all of it where the config puts it.
--
-- Requests refused here never reach a replica, and the limit caps what a replica has in flight, so neither shows the
-- load to Serve's autoscaler. The ratio of requests offered to a backend to those it sent to a server goes to the
-- replicas in X-Recsys-Offered (`txn.recsys_offered`); they report their requests' time in the system times that ratio
-- as their demand (serve_apps/core/demand.py).

local TICK_MS = 100        -- how often limits are set
local MIN_LIMIT = 2        -- a replica always gets this many: one in the model call, one being read
local SMOOTHING = 0.5      -- weight of the newest tick in a replica's rate
local WINDOW_TICKS = 10    -- a replica's capacity: its best (smoothed) rate over the last second
local QUIET_TICKS = 3      -- ticks in a row with nothing turned away before limits and room are given back
local CALM_TICKS = 5       -- or with none refused at once and no more held than answered in the budget (floods pause)
local RATE_SMOOTHING = 0.2 -- weight of the newest tick in a backend's offered and sent rates
local MAX_RATIO = 1000
-- HAProxy takes queued requests by (time queued + priority offset) on a 20-bit millisecond clock, ordered within
-- 524 s of now: an offset of -2 x (now mod LIFO_PERIOD_MS) puts the newest first, but for the few requests queued
-- across each period's end, which go before the next ones.
local LIFO_PERIOD_MS = 200000

local backends = {}

for _, argument in ipairs(table.pack(...)) do
  local name, maxconn, queue_ms, maxqueue, target_ms, held =
    string.match(argument, "^([^,]+),(%d+),(%d+),(%d+),(%d+),(%d+)$")
  if name == nil then
    error("adaptive_limits.lua: argument '" .. argument ..
          "' is not <backend>,<maxconn>,<queue_ms>,<maxqueue>,<target_ms>,<held>")
  end
  maxqueue = tonumber(maxqueue)
  backends[name] = {
    maxconn = tonumber(maxconn),
    maxqueue = maxqueue > 0 and maxqueue or 1000000,
    budget = tonumber(queue_ms) / 1000,
    wait = math.max(tonumber(queue_ms) - 2 * tonumber(target_ms), 0) / 1000,  -- what a queued request may wait
    target = tonumber(target_ms) / 1000,
    held = tonumber(held),  -- requests per replica, in flight and queued, held before any is refused at once
    servers = {},
    room = maxqueue > 0 and maxqueue or 1000000,
    offered = 0,            -- requests offered since the last tick (the admit action counts them)
    refused = 0,            -- of which refused at once
    failed = nil,           -- the backend's 503s so far (HAProxy's counter)
    quiet = 0,              -- ticks since it last turned a request away
    calm = 0,               -- ticks in a row it refused none at once and held no more than it answers in the budget
    answered = {rates = {}},  -- its 200s: the count (total), its rate and the rates of the last WINDOW_TICKS
    lifo = false,           -- whether its queue is taken newest first (from a tick that turned requests away)
    offered_rate = nil,
    sent_rate = nil,
    offered_text = "1.000",
  }
end

-- Per request to a limited backend: count it, and refuse it (`txn.recsys_refuse`, answered by the frontend's rule)
-- if the queue has no room for it, or pass on the offered ratio.
core.register_action("recsys_admit", {"http-req"}, function(txn, name)
  local backend = backends[name]
  if backend == nil then
    return
  end
  backend.offered = backend.offered + 1
  if txn.f:avg_queue(name) >= backend.room then
    backend.refused = backend.refused + 1
    txn:set_var("txn.recsys_refuse", 1)
  else
    txn:set_var("txn.recsys_offered", backend.offered_text)
    if backend.lifo then
      local now = core.now()
      txn:set_priority_offset(-2 * ((now.sec * 1000 + now.usec // 1000) % LIFO_PERIOD_MS))
    end
  end
end, 1)

local function seconds()
  local now = core.now()
  return now.sec + now.usec / 1000000
end

local function active(stats)
  return stats.bck == 0 and (string.sub(stats.status, 1, 2) == "UP" or stats.status == "no check")
end

local function smoothed(old, new, weight)
  if old == nil then
    return new
  end
  return old + weight * (new - old)
end

-- The best of a replica's last WINDOW_TICKS rates. A rate measured while something else takes the replica's cores for
-- a moment understates what it can do, and a limit set from it would lower the rate further; the best recent rate is
-- what it did, and can do again once the cores are back (BBR's estimate of a path's bandwidth, for the same reason).
local function best_rate(s)
  table.insert(s.rates, s.rate)
  if #s.rates > WINDOW_TICKS then
    table.remove(s.rates, 1)
  end
  return math.max(table.unpack(s.rates))
end

local function tick(backend, proxy, elapsed)
  local totals = proxy:get_stats()
  local turning_away = backend.refused > 0 or totals.hrsp_5xx > (backend.failed or totals.hrsp_5xx)
  backend.failed = totals.hrsp_5xx
  backend.quiet = turning_away and 0 or backend.quiet + 1
  -- What each active replica finished lately, and what the backend holds: queued, and in flight in its replicas.
  local sent, capacity, holds, active_servers = 0, 0, totals.qcur, {}
  for name, server in pairs(proxy.servers) do
    local stats = server:get_stats()
    local s = backend.servers[name]
    if s == nil then
      s = {stot = stats.stot, rate = nil, rates = {}, setting = backend.maxconn}
      backend.servers[name] = s
    end
    local new = math.max(stats.stot - s.stot, 0)  -- requests sent over the tick: in steady state, those finished
    sent, s.stot = sent + new, stats.stot
    if active(stats) then
      s.rate = smoothed(s.rate, new / elapsed, SMOOTHING)
      s.best = best_rate(s)
      capacity, holds = capacity + s.best, holds + stats.scur + stats.qcur
      table.insert(active_servers, {server = server, state = s})
    end
  end
  -- Requests the replicas answer within the budget are answered in time on the whole (Little's law), however slow a
  -- replica is now: limiting what is in flight then only moves them into the queue, whose timeout refuses them (and
  -- each refusal, being turned away, keeps the limit down), so the limits come off. A refusal at once means the
  -- queue was full.
  local answered = math.max(totals.hrsp_2xx - (backend.answered.total or totals.hrsp_2xx), 0)
  backend.answered.total = totals.hrsp_2xx
  backend.answered.rate = smoothed(backend.answered.rate, answered / elapsed, SMOOTHING)
  local in_time = best_rate(backend.answered) * backend.budget  -- not the rate sent: a replica's refusals are fast
  backend.calm = (backend.refused == 0 and holds <= in_time) and backend.calm + 1 or 0
  local fits = backend.quiet >= QUIET_TICKS or backend.calm >= CALM_TICKS  -- a moment's lull is not the end of a flood
  local limiting = turning_away and not fits
  backend.lifo = backend.target > 0 and (limiting or (backend.lifo and not fits))
  local limits = 0
  for _, replica in ipairs(active_servers) do
    local s = replica.state
    if backend.target > 0 then
      local limit = s.setting
      if limiting then
        limit = math.min(math.max(math.floor(s.best * backend.target + 0.5), MIN_LIMIT), backend.maxconn)
      elseif fits then
        limit = math.min(s.setting * 2, backend.maxconn)
      end
      if limit ~= s.setting then
        replica.server:set_maxconn(tostring(limit))
        s.setting = limit
      end
    end
    limits = limits + s.setting
  end
  local servers = #active_servers
  if backend.target > 0 and servers > 0 then
    if limiting then
      local room = math.floor(capacity * backend.wait / servers)
      backend.room = math.min(math.max(room, math.ceil(backend.held - limits / servers), 1), backend.maxqueue)
    elseif fits then
      backend.room = backend.maxqueue
    end
  end
  backend.offered_rate = smoothed(backend.offered_rate, backend.offered / elapsed, RATE_SMOOTHING)
  backend.sent_rate = smoothed(backend.sent_rate, sent / elapsed, RATE_SMOOTHING)
  backend.offered, backend.refused = 0, 0
  local ratio = 1
  if backend.sent_rate > 0 then
    ratio = math.min(math.max(backend.offered_rate / backend.sent_rate, 1), MAX_RATIO)
  elseif backend.offered_rate > 0 then
    ratio = MAX_RATIO
  end
  backend.offered_text = string.format("%.3f", ratio)
end

core.register_task(function()
  local last = seconds()
  while true do
    core.msleep(TICK_MS)
    local now = seconds()
    for name, backend in pairs(backends) do
      local proxy = core.backends[name]
      if proxy ~= nil then
        tick(backend, proxy, now - last)
      end
    end
    last = now
  end
end)
