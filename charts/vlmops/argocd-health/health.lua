-- Argo CD health for vlmops.dev/{{KIND}} (resource.customizations.health.vlmops.dev_{{KIND}}).
-- Reads the kstatus conditions every vlmops kind keeps: {{DONE}} (done), Reconciling, Stalled.
-- One template for all kinds: charts/sync_argocd.py fills in KIND and DONE.
local DONE = "{{DONE}}"
local hs = { status = "Progressing", message = "Waiting for the vlmops operator to observe this resource" }
if obj.status == nil then
  return hs
end
local st = obj.status
local conds = {}
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type ~= nil then
      conds[c.type] = c
    end
  end
end
local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if st.message ~= nil and st.message ~= "" then
    return st.message
  end
  return fallback
end
local gen = nil
if obj.metadata ~= nil then
  gen = obj.metadata.generation
end
if gen ~= nil and (st.observedGeneration == nil or st.observedGeneration < gen) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(gen)
  return hs
end
local stalled = conds["Stalled"]
if (stalled ~= nil and stalled.status == "True") or st.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = text(stalled, "Failed")
  return hs
end
local done = conds[DONE]
if done == nil then
  done = conds["Ready"]
end
if done ~= nil and done.status == "True" then
  hs.status = "Healthy"
  hs.message = text(done, DONE)
  return hs
end
local reconciling = conds["Reconciling"]
if reconciling ~= nil and reconciling.status == "True" then
  local reason = reconciling.reason or "Reconciling"
  hs.message = reason .. ": " .. text(reconciling, "in progress")
  return hs
end
hs.message = text(done, "Progressing")
return hs
