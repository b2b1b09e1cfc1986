-- Argo CD health check for mlops.dev/v1alpha1 ModelDeployment.
--
-- Reads only what the operator writes to .status (observedGeneration, phase,
-- currentRevision, conditions Ready/Progressing/Degraded; a canary's step is
-- in the Progressing condition) and maps it to an
-- Argo CD health status. Plain Lua 5.1 with base functions only (no string,
-- math, table, os or io library), so it runs from argocd-cm without
-- useOpenLibs.

local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

-- The condition's message, or nil when it has none.
local function messageOf(c)
  if c == nil or c.message == nil or c.message == "" then
    return nil
  end
  return tostring(c.message)
end

-- "Reason: message", or whichever of the two is there.
local function explain(c, fallback)
  if c == nil then
    return fallback
  end
  local msg = messageOf(c)
  if c.reason ~= nil and c.reason ~= "" then
    if msg ~= nil then
      return tostring(c.reason) .. ": " .. msg
    end
    return tostring(c.reason)
  end
  if msg ~= nil then
    return msg
  end
  return fallback
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

-- 1. The operator has not acted on the latest spec yet.
if status == nil or (generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation)) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for the operator to report status"
  end
  return hs
end

local phase = status.phase
local ready = condition(status, "Ready")
local progressing = condition(status, "Progressing")
local degraded = condition(status, "Degraded")

-- 2. The requested revision failed and the stable one serves again.
if phase == "RolledBack" then
  hs.status = "Degraded"
  local msg = messageOf(degraded)
  if msg == nil then
    if status.currentRevision ~= nil then
      msg = "serving revision " .. tostring(status.currentRevision)
    else
      msg = "serving the stable revision"
    end
    if status.updateRevision ~= nil then
      msg = msg .. "; revision " .. tostring(status.updateRevision) .. " rolled back"
    else
      msg = msg .. "; the requested revision was rolled back"
    end
  end
  hs.message = "RolledBack: " .. msg
  return hs
end

-- A metric analysis that stopped for lack of answers waits for a person,
-- like a paused rollout: Suspended (step 4), not Degraded.
local stopped = phase == "Paused" and degraded ~= nil and degraded.reason == "AnalysisInconclusive"

-- 3. Something needs a person: InvalidSpec, RolloutFailed,
--    ProgressDeadlineExceeded, MetricBreach (or RolledBack without the phase).
if (isTrue(degraded) and not stopped) or phase == "Degraded" then
  hs.status = "Degraded"
  if isTrue(degraded) then
    hs.message = explain(degraded, "Degraded")
  else
    hs.message = "Degraded: the operator reports phase Degraded"
  end
  return hs
end

-- 4. spec.paused, or a stopped metric analysis: nothing moves until a
--    person acts.
if phase == "Paused" then
  hs.status = "Suspended"
  if stopped then
    hs.message = explain(progressing, explain(degraded, "AnalysisInconclusive"))
    return hs
  end
  local msg = nil
  if progressing ~= nil and progressing.reason == "Paused" then
    msg = messageOf(progressing)
  end
  if msg == nil then
    msg = "spec.paused is true"
  end
  hs.message = "Paused: " .. msg
  return hs
end

-- 4b. A canary at a pause without duration waits for
--     `kubectl model promote`: a person decides, like a paused rollout.
if progressing ~= nil and progressing.reason == "CanaryPaused" then
  hs.status = "Suspended"
  local name = "NAME"
  if obj.metadata ~= nil and obj.metadata.name ~= nil then
    name = tostring(obj.metadata.name)
  end
  hs.message = explain(progressing, "CanaryPaused") .. " (kubectl model promote " .. name .. ")"
  return hs
end

-- 5. A rollout is under way (a canary's step is in the Progressing
--    message), or nothing serves yet.
if isTrue(progressing) or phase == "Progressing" or phase == "Pending" then
  hs.status = "Progressing"
  local msg = nil
  if isTrue(progressing) then
    msg = messageOf(progressing)
  end
  if msg == nil then
    msg = messageOf(ready)
  end
  if msg == nil then
    msg = "phase " .. tostring(phase)
  end
  hs.message = msg
  return hs
end

-- 6. Every pod runs the requested revision and is available.
if phase == "Healthy" then
  if isTrue(ready) then
    hs.status = "Healthy"
    hs.message = messageOf(ready) or "Ready"
    return hs
  end
  -- replicas: 0 meets the spec (the operator reports phase Healthy);
  -- nothing serves, but there is nothing to wait for either.
  if ready ~= nil and ready.reason == "ScaledToZero" then
    hs.status = "Healthy"
    hs.message = messageOf(ready) or "ScaledToZero"
    return hs
  end
end

-- 7. Anything else: say what is missing.
hs.status = "Progressing"
if phase == nil then
  hs.message = "Waiting for the operator to report a phase"
elseif ready ~= nil and not isTrue(ready) then
  hs.message = "Waiting for pods: " .. explain(ready, "Ready is not True")
else
  hs.message = "Waiting for the model to become Ready (phase " .. tostring(phase) .. ")"
end
return hs
