std = "lua54"
max_line_length = 120
codes = true

files["spec"] = { std = "+busted" }
files["spec/support"] = { std = "+busted" }
files["bench"] = { max_line_length = 140 }
-- policy scripts run with a `module` object (docs/scripting.md)
files["examples/policy"] = { read_globals = { "module" } }
files["examples/bot.lua"] = { read_globals = { "module" } }
files["examples/admin_rooms.lua"] = { read_globals = { "module" } }
-- lab scenarios run with the lab (docs/lab.md)
files["examples/lab"] = { read_globals = { "lab" } }
