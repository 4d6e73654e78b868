-- Loaded by busted before any spec file (.busted's helper). busted runs each
-- file insulated: the modules a file loads are dropped from package.loaded
-- when it ends. luv must not be dropped and loaded again in one process —
-- a second luaopen_luv while the first module's loop is still alive (or
-- being collected) leaves libuv with a corrupt handle queue — so it is
-- loaded here, once, before the first file.
require "luv"
