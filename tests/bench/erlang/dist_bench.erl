%% dist_bench: the Erlang side of the dist suite, run by scripts/bench next to our
%% tests/bench/dist_bench.c with the same parameters. See /work/shared/BENCHMARKS.md.
%%
%%   ERL_EPMD_PORT=PORT erl +S 2 -noshell -start_epmd false -setcookie C \
%%       -proto_dist inet_tcp|inet_tls [-ssl_dist_optfile FILE] -pa DIR \
%%       -run dist_bench main -extra --name bench_a@127.0.0.1 [--json] [--verbose] \
%%       [--iterations N] BENCH...
%%
%% The driver starts its distribution with net_kernel:start/1 rather than -name, so that the
%% connect bench may stop and restart it. It starts the peer node itself (erl with the same scheduler count, cookie,
%% distribution and options, through a port); the peer says ready, and halts when its standard
%% input closes, that is when the driver closes the port or dies.
%%
%%   rtt           50,000 strictly sequential {ping, Self, I} / {pong, I} round trips
%%   call          20,000 gen_server:call(Server, I, infinity) to a gen_server on the peer:
%%                 Erlang's remote call (a monitor, the request, the reply, a demonitor)
%%   stream_small  1,000,000 one-way 16-byte binaries to a sink, then {last, Self}; timed
%%                 until the sink's {done, Count} arrives
%%   stream_1k     300,000 one-way 1 KiB binaries, the same way
%%   stream_64k    10,000 one-way 64 KiB binaries, the same way (MB/s, 1 MB = 10^6 bytes)
%%   hol_p99       a ping due every millisecond (2,000 of them), each timed from when it was
%%                 due to its pong, while another process streams 1 MiB binaries to a sink
%%                 on the peer; the 99th percentile of the round trips
%%   connect       100 cycles of net_kernel:connect_node/1 and erlang:disconnect_node/1. Before
%%                 each cycle, untimed, the driver restarts its distribution under a new name,
%%                 as our side makes a new node per cycle: a peer that has not yet seen the
%%                 last cycle's connection go down then meets a node it does not know, rather
%%                 than racing the old connection (connect_node then returns false).
%%
%% Method (Savina's): --iterations runs (default 5), drop the runs outside +-20 % of the
%% median, report the median of the rest. Each run is a fresh process, killed if it takes
%% longer than 120 s; the VM then exits 1.
-module(dist_bench).
-behaviour(gen_server).
-export([main/0, main/1, peer/1]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(BENCHES, [rtt, call, stream_small, stream_1k, stream_64k, hol_p99, connect]).
-define(RTT_N, 50000).
-define(CALL_N, 20000).
-define(HOL_PINGS, 2000).
-define(HOL_BULK, 1048576).
-define(HOL_GRACE_MS, 10000).
-define(CONNECT_N, 100).
-define(TIMEOUT_MS, 120000).
-define(START_MS, 30000).

%% ---- The driver -------------------------------------------------------------------------------

main() -> main(init:get_plain_arguments()).

main(Args) ->
    try
        Opts = parse(Args, #{json => false, verbose => false, iterations => 5, benches => []}),
        Benches = case maps:get(benches, Opts) of
                      [] -> ?BENCHES;
                      Bs -> [B || B <- ?BENCHES, lists:member(B, Bs)]
                  end,
        Name = maps:get(name, Opts, "bench_a_" ++ os:getpid() ++ "@127.0.0.1"),
        {ok, _} = net_kernel:start([list_to_atom(Name), longnames]),
        Peer = start_peer(),
        lists:foreach(fun(B) -> bench(B, Peer, Opts) end, Benches),
        stop_peer(Peer)
    of
        ok -> halt(0)
    catch
        throw:{usage, Msg} ->
            io:format(standard_error, "dist_bench: ~s~n", [Msg]),
            halt(2);
        Class:Reason:Stack ->
            io:format(standard_error, "dist_bench: ~p:~p~n~p~n", [Class, Reason, Stack]),
            halt(1)
    end.

parse([], Opts) -> Opts;
parse(["--json" | T], Opts) -> parse(T, Opts#{json := true});
parse(["--name", Name | T], Opts) -> parse(T, Opts#{name => Name});
parse(["--verbose" | T], Opts) -> parse(T, Opts#{verbose := true});
parse(["--iterations", N | T], Opts) ->
    case catch list_to_integer(N) of
        I when is_integer(I), I > 0 -> parse(T, Opts#{iterations := I});
        _ -> throw({usage, "--iterations needs a positive integer"})
    end;
parse(["all" | T], Opts) -> parse(T, Opts#{benches := ?BENCHES});
parse([B | T], Opts = #{benches := Bs}) ->
    Atom = list_to_atom(B),
    case lists:member(Atom, ?BENCHES) of
        true -> parse(T, Opts#{benches := [Atom | Bs]});
        false -> throw({usage, "unknown bench or option: " ++ B})
    end.

transport() ->
    case init:get_argument(proto_dist) of
        {ok, [["inet_tls" | _] | _]} -> tls;
        _ -> tcp
    end.

%% The peer: erl with our own distribution settings, through a port owned by a keeper process
%% that copies the peer's output to standard error (so no port data reaches a bench's mailbox).
start_peer() ->
    register(dist_bench_driver, self()),
    [_, Host] = string:split(atom_to_list(node()), "@"),
    Name = "bench_b_" ++ os:getpid() ++ "@" ++ Host,
    Optfile = case init:get_argument(ssl_dist_optfile) of
                  {ok, [[F | _] | _]} -> ["-ssl_dist_optfile", F];
                  _ -> []
              end,
    Proto = case init:get_argument(proto_dist) of
                {ok, [[P | _] | _]} -> ["-proto_dist", P];
                _ -> []
            end,
    Args = ["+S", integer_to_list(erlang:system_info(schedulers_online)), "-noshell",
            "-start_epmd", "false", "-name", Name,
            "-setcookie", atom_to_list(erlang:get_cookie())] ++ Proto ++ Optfile ++
        ["-pa", filename:dirname(code:which(?MODULE)),
         "-run", "dist_bench", "peer", atom_to_list(node())],
    Erl = os:find_executable("erl"),
    Keeper = spawn_link(fun() -> keeper(Erl, Args) end),
    receive
        {ready, Pids} -> {Keeper, list_to_atom(Name), Pids}
    after ?START_MS ->
        exit(peer_not_ready)
    end.

keeper(Erl, Args) ->
    Port = open_port({spawn_executable, Erl}, [{args, Args}, use_stdio, stderr_to_stdout,
                                               exit_status, binary]),
    keep(Port).

keep(Port) ->
    receive
        {Port, {data, Data}} ->
            io:format(standard_error, "(peer) ~s", [Data]),
            keep(Port);
        {Port, {exit_status, S}} ->
            exit({peer_exited, S});
        {stop, From} ->
            port_close(Port),
            From ! stopped
    end.

stop_peer({Keeper, _, _}) ->
    unlink(Keeper),
    Keeper ! {stop, self()},
    receive stopped -> ok after 5000 -> ok end.

%% ---- The method and the report ----------------------------------------------------------------

bench(B, {_, Node, Pids}, Opts = #{iterations := Iters}) ->
    Runs = [once(B, Node, Pids) || _ <- lists:seq(1, Iters)],
    case maps:get(verbose, Opts) of
        true -> io:format(standard_error, "~s runs: ~w~n", [B, Runs]);
        false -> ok
    end,
    {Value, Kept} = savina_median([V || {V, _, _} <- Runs]),
    {Extra, _} = savina_median([E || {_, E, _} <- Runs]),
    Lost = lists:sum([L || {_, _, L} <- Runs]),
    emit(Opts, B, n(B), Value, {Extra, Lost}, Iters, Kept).

n(rtt) -> ?RTT_N;
n(call) -> ?CALL_N;
n(stream_small) -> 1000000;
n(stream_1k) -> 300000;
n(stream_64k) -> 10000;
n(hol_p99) -> ?HOL_PINGS;
n(connect) -> ?CONNECT_N.

msg_size(stream_small) -> 16;
msg_size(stream_1k) -> 1024;
msg_size(stream_64k) -> 65536;
msg_size(_) -> 0.

%% One run in a fresh process: {Seconds, 0, 0}, or {P99Seconds, BulkMBperS, Lost} for hol_p99.
once(B, Node, Pids) ->
    Fun = fun() -> exit({done, run(B, Node, Pids)}) end,
    {Pid, Ref} = spawn_opt(Fun, [monitor]),
    receive
        {'DOWN', Ref, process, Pid, {done, Result}} -> Result;
        {'DOWN', Ref, process, Pid, Reason} -> exit({B, Reason})
    after ?TIMEOUT_MS ->
        exit(Pid, kill),
        exit({timeout, B})
    end.

savina_median(Values) ->
    M = median(Values),
    case [V || V <- Values, V >= 0.8 * M, V =< 1.2 * M] of
        [] -> {M, 0};
        Kept -> {median(Kept), length(Kept)}
    end.

median(L) ->
    S = lists:sort(L),
    N = length(S),
    case N rem 2 of
        1 -> lists:nth(N div 2 + 1, S);
        0 -> (lists:nth(N div 2, S) + lists:nth(N div 2 + 1, S)) / 2
    end.

emit(Opts, B, N, Value, Extra, Iters, Kept) ->
    {Rate, More} =
        case B of
            hol_p99 ->
                {Bulk, Lost} = Extra,
                {1 / Value, [{"p99_us", fmt(Value * 1.0e6)}, {"bulk_mb_per_s", fmt(Bulk)},
                             {"lost", integer_to_list(Lost)}]};
            _ ->
                case msg_size(B) of
                    0 -> {N / Value, [{"us_per_op", fmt(Value * 1.0e6 / N)}]};
                    Sz -> {N / Value, [{"mb_per_s", fmt(N * Sz / Value / 1.0e6)}]}
                end
        end,
    Fields = [{"suite", "\"dist\""}, {"bench", [$", atom_to_list(B), $"]},
              {"impl", "\"erlang\""}, {"transport", [$", atom_to_list(transport()), $"]},
              {"n", integer_to_list(N)},
              {"seconds", float_to_list(Value, [{decimals, 7}, compact])},
              {"ops_per_s", integer_to_list(round(Rate))},
              {"iterations", integer_to_list(Iters)}, {"kept", integer_to_list(Kept)},
              {"schedulers", integer_to_list(erlang:system_info(schedulers_online))}] ++ More,
    case maps:get(json, Opts) of
        true ->
            Body = lists:join(",", [["\"", K, "\":", V] || {K, V} <- Fields]),
            io:format("{~s}~n", [Body]);
        false ->
            io:format("~-13s ~s n=~-8w ~11.6f s  (~w of ~w runs kept)~s~n",
                      [B, transport(), N, Value, Kept, Iters,
                       [[" ", K, "=", V] || {K, V} <- More]])
    end.

fmt(X) -> float_to_list(float(X), [{decimals, 2}, compact]).

now_s() -> erlang:monotonic_time(nanosecond) / 1.0e9.

%% ---- The benches ------------------------------------------------------------------------------

run(rtt, _, #{echo := Echo}) ->
    T0 = now_s(),
    ok = rtt(Echo, ?RTT_N),
    {now_s() - T0, 0, 0};
run(call, _, #{server := Server}) ->
    T0 = now_s(),
    ok = call(Server, ?CALL_N),
    {now_s() - T0, 0, 0};
run(hol_p99, _, Pids) ->
    hol(Pids);
run(connect, Node, _) ->
    {connect(Node, ?CONNECT_N, 0.0), 0, 0};
run(B, _, #{sink := Sink}) ->
    N = n(B),
    Bin = list_to_binary([I band 255 || I <- lists:seq(0, msg_size(B) - 1)]),
    T0 = now_s(),
    ok = stream(Sink, Bin, N),
    Sink ! {last, self()},
    receive {done, N} -> ok; {done, Other} -> exit({sink_counted, Other, N}) end,
    {now_s() - T0, 0, 0}.

rtt(_, 0) -> ok;
rtt(Echo, K) ->
    Echo ! {ping, self(), K},
    receive {pong, K} -> rtt(Echo, K - 1) end.

call(_, 0) -> ok;
call(Server, K) ->
    K = gen_server:call(Server, K, infinity),
    call(Server, K - 1).

stream(_, _, 0) -> ok;
stream(Sink, Bin, K) ->
    Sink ! Bin,
    stream(Sink, Bin, K - 1).

connect(_, 0, Secs) -> Secs;
connect(Node, K, Secs) ->
    [Base, Host] = string:split(atom_to_list(node()), "@"),
    [Prefix | _] = string:split(Base, "_c"),
    Name = lists:flatten([Prefix, "_c", integer_to_list(K), "@", Host]),
    ok = net_kernel:stop(),
    {ok, _} = net_kernel:start([list_to_atom(Name), longnames]),
    T0 = now_s(),
    true = net_kernel:connect_node(Node),
    true = erlang:disconnect_node(Node),
    connect(Node, K - 1, Secs + now_s() - T0).

%% hol_p99: ping I is due at Start + I ms; its round trip counts from then, so a ping held up
%% by a busy connection counts the wait. The pinger is a process of its own, since a send to a
%% busy connection suspends it; the collector takes the pongs until every ping is back or
%% ?HOL_GRACE_MS after the last was due. A ping still out by then counts as ?HOL_GRACE_MS (a
%% lower bound), and the run reports how many were lost that way.
hol(#{echo := Echo, sink2 := Sink}) ->
    Self = self(),
    Big = binary:copy(<<7>>, ?HOL_BULK),
    T0 = now_s(),
    Bulk = spawn_link(fun() -> bulk(Sink, Big, 0, Self) end),
    Start = erlang:monotonic_time(millisecond) + 1,
    Pinger = spawn_link(fun() -> pinger(Echo, Self, Start, 0) end),
    Rtts = collect(Start + ?HOL_PINGS + ?HOL_GRACE_MS, 0, []),
    unlink(Pinger),
    exit(Pinger, kill),
    Bulk ! stop,
    receive {bulk_done, Sent} -> ok end,
    Secs = now_s() - T0,
    Lost = ?HOL_PINGS - length(Rtts),
    All = Rtts ++ lists:duplicate(Lost, ?HOL_GRACE_MS / 1000),
    P99 = lists:nth(ceil(0.99 * ?HOL_PINGS), lists:sort(All)),
    {P99, Sent * ?HOL_BULK / Secs / 1.0e6, Lost}.

pinger(_, _, _, ?HOL_PINGS) -> ok;
pinger(Echo, Collector, Start, I) ->
    Due = Start + I,
    receive after max(0, Due - erlang:monotonic_time(millisecond)) -> ok end,
    Echo ! {ping, Collector, {hol, Due / 1000}},
    pinger(Echo, Collector, Start, I + 1).

collect(_, ?HOL_PINGS, Rtts) -> Rtts;
collect(Deadline, Got, Rtts) ->
    receive
        {pong, {hol, Due}} ->
            Rtt = erlang:monotonic_time(nanosecond) / 1.0e9 - Due,
            collect(Deadline, Got + 1, [Rtt | Rtts])
    after max(0, Deadline - erlang:monotonic_time(millisecond)) ->
        Rtts
    end.

bulk(Sink, Big, N, Parent) ->
    receive
        stop ->
            Sink ! {last, self()},
            receive {done, N} -> Parent ! {bulk_done, N} end
    after 0 ->
        Sink ! Big,
        bulk(Sink, Big, N + 1, Parent)
    end.

%% ---- The peer ---------------------------------------------------------------------------------

%% From -run dist_bench peer DRIVER.
peer([Driver]) ->
    {ok, Server} = gen_server:start(?MODULE, [], []),
    Pids = #{echo => spawn(fun echo/0), sink => spawn(fun() -> sink(0) end),
             sink2 => spawn(fun() -> sink(0) end), server => Server},
    {dist_bench_driver, list_to_atom(Driver)} ! {ready, Pids},
    spawn(fun watch_stdin/0),
    ok.

%% Halt when the driver closes the port (or dies): standard input ends.
watch_stdin() ->
    case io:get_line("") of
        eof -> halt(0);
        {error, _} -> halt(0);
        _ -> watch_stdin()
    end.

echo() ->
    receive
        {ping, From, X} ->
            From ! {pong, X},
            echo()
    end.

sink(N) ->
    receive
        {last, From} ->
            From ! {done, N},
            sink(0);
        _ ->
            sink(N + 1)
    end.

init([]) -> {ok, nostate}.
handle_call(X, _From, S) -> {reply, X, S}.
handle_cast(_, S) -> {noreply, S}.
