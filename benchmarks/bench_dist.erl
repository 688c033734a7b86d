%% The Erlang side of benchmarks/bench_dist.py: Erlang's own node-to-node
%% figures, measured in the same run as the Python ones.
%%
%% bench_dist.py compiles this module with erlc into a temporary directory and
%% starts each erl node with `-eval 'bench_dist:start()'`. A node then holds:
%%
%% - `bench_server`: a gen_server that echoes every call, counts casts, and
%%   answers `sync` with the count so far (which it resets): the same server
%%   as the Python node's `BenchServer`.
%% - `bench_client`: a process that runs one measurement per command and
%%   answers `{Tag, Value}` to whoever asked. The Python driver sends it
%%   `{From, Tag, Cmd}` over distribution, so the same driver times Erlang
%%   and Python the same way:
%%     {call, Dest, Msg, N}  -> mean microseconds per gen_server:call
%%     {cast, Dest, Msg, N}  -> messages per second: N casts, then one sync call
%%     {kill_down, Node, K}  -> K microsecond figures, each from exit(P, kill)
%%                              on Node to the 'DOWN' of P seen here
%%     {kill, Victim}        -> (internal to kill_down) kill Victim now and
%%                              answer the wall-clock time of the kill
%%   and `stop` halts the node.
-module(bench_dist).
-behaviour(gen_server).
-export([start/0, victim/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

start() ->
    %% Only errors: a benchmark's log lines would be noise in its output.
    logger:set_primary_config(level, error),
    {ok, _} = gen_server:start({local, bench_server}, ?MODULE, [], []),
    register(bench_client, spawn(fun client/0)),
    io:format("ready~n").

init([]) -> {ok, 0}.
handle_call(sync, _From, N) -> {reply, N, 0};
handle_call(Msg, _From, N) -> {reply, Msg, N}.
handle_cast(_Msg, N) -> {noreply, N + 1}.
handle_info(_Msg, N) -> {noreply, N}.

client() ->
    receive
        {From, Tag, Cmd} ->
            From ! {Tag, run(Cmd)},
            client();
        stop ->
            erlang:halt(0)
    end.

now_us() -> erlang:monotonic_time(nanosecond) / 1000.

run({call, Dest, Msg, N}) ->
    T0 = now_us(),
    call_loop(Dest, Msg, N),
    (now_us() - T0) / N;
run({cast, Dest, Msg, N}) ->
    T0 = now_us(),
    cast_loop(Dest, Msg, N),
    %% The count proves every cast arrived before the clock stops.
    N = gen_server:call(Dest, sync, infinity),
    N / ((now_us() - T0) / 1.0e6);
run({kill_down, Node, K}) ->
    [kill_down(Node) || _ <- lists:seq(1, K)];
run({kill, Victim}) ->
    %% Wall-clock time: the one clock both nodes of this machine share.
    T0 = os:system_time(nanosecond),
    exit(Victim, kill),
    T0.

call_loop(_Dest, _Msg, 0) -> ok;
call_loop(Dest, Msg, N) ->
    Msg = gen_server:call(Dest, Msg, infinity),
    call_loop(Dest, Msg, N - 1).

cast_loop(_Dest, _Msg, 0) -> ok;
cast_loop(Dest, Msg, N) ->
    gen_server:cast(Dest, Msg),
    cast_loop(Dest, Msg, N - 1).

%% One kill: a victim on Node, monitored from here; Node's client kills it
%% (so the kill itself does not cross the network, as a SIGKILL of a Python
%% process does not) and says when; the figure is kill -> 'DOWN' here.
kill_down(Node) ->
    Victim = spawn(Node, ?MODULE, victim, []),
    Ref = monitor(process, Victim),
    Tag = make_ref(),
    %% After the MONITOR_P on the same connection: the monitor is in place
    %% on Node before the kill is asked for.
    {bench_client, Node} ! {self(), Tag, {kill, Victim}},
    T1 = receive {'DOWN', Ref, process, Victim, _} -> os:system_time(nanosecond) end,
    T0 = receive {Tag, T} -> T end,
    (T1 - T0) / 1000.

victim() ->
    receive _ -> ok end.
