# bench/plot.gp: draws the charts of aspawn-bench from its --plot-data files.
#
#   gnuplot -e "datadir='bench/results'; out='bench/results/throughput.png'" bench/plot.gp
#
# datadir/plot-throughput.tmp   launches/s by contender and in-flight count
# datadir/plot-parent-size.tmp  microseconds per launch by contender and
#                               touched parent memory (at a fixed in-flight
#                               count)
# Each file has one block per program (exit0, then true); the first line of a
# block names the columns.

if (!exists("datadir")) datadir = "bench/results"
if (!exists("out")) out = datadir . "/throughput.png"

tp = datadir . "/plot-throughput.tmp"
ps = datadir . "/plot-parent-size.tmp"

set terminal pngcairo size 1600,1100 font ",10" noenhanced
set output out
set datafile missing "?"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set logscale y
set xtics rotate by -30 scale 0
set key outside right top vertical autotitle columnheader

set multiplot layout 2,2 title "aspawn-bench (medians of the repetitions; log scale)"

set title "exit0 (static, no libc): throughput by children in flight"
set ylabel "launches/s (higher is better)"
set key title "in flight"
plot for [c=2:*] tp index 0 using c:xtic(1)

set title "/bin/true: throughput by children in flight"
plot for [c=2:*] tp index 1 using c:xtic(1)

set title "exit0: wall time per launch by touched parent memory (16 in flight by default)"
set ylabel "us per launch (lower is better)"
set key title "parent holds"
plot for [c=2:*] ps index 0 using c:xtic(1)

set title "/bin/true: wall time per launch by touched parent memory"
plot for [c=2:*] ps index 1 using c:xtic(1)

unset multiplot
