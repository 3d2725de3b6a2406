# A demo node on the embedded default: everything in this one process, data in ./anylog-data.
# Started by `make run`; edit freely, each line is an AnyLog command.

# The telnet console: `telnet 127.0.0.1 32051` from another terminal.
run console where ip = 127.0.0.1 and port = 32051
