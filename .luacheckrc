std = "lua54"
max_line_length = 120
codes = true

files["spec"] = { std = "+busted" }
files["spec/support"] = { std = "+busted" }
files["bench"] = { max_line_length = 140 }
