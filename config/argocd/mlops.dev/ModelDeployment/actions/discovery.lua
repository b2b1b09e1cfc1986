-- Argo CD resource actions for a ModelDeployment: the buttons the Argo CD UI
-- offers, enabled by the rules `kubectl model` applies
-- (src/bin/kubectl_model/canary_commands.rs, rollout::canary::running).
-- Runs without Lua's string library (Argo CD's default).

-- The canary rolling out now: status.canary of the current revision while
-- that revision's history entry is still Progressing, and steps remain.
local function stepping_canary()
  local status = obj.status
  if status == nil or status.canary == nil or status.currentRevision == nil then
    return nil
  end
  local c = status.canary
  if c.revision ~= status.currentRevision then
    return nil
  end
  local progressing = false
  for _, entry in ipairs(status.history or {}) do
    if entry.revision == c.revision then
      progressing = entry.outcome == "Progressing"
    end
  end
  if not progressing or (c.stepIndex or 0) >= (c.steps or 0) then
    return nil
  end
  return c
end

local canary = stepping_canary()
local paused = obj.spec ~= nil and obj.spec.paused == true
local actions = {}
actions["promote"] = {["disabled"] = canary == nil}
actions["promote-full"] = {["disabled"] = canary == nil}
actions["abort"] = {["disabled"] = canary == nil}
actions["retry"] = {["disabled"] = false}
actions["pause"] = {["disabled"] = paused}
actions["resume"] = {["disabled"] = not paused}
return actions
