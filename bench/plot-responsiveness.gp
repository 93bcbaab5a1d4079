# bench/plot-responsiveness.gp: draws the responsiveness chart of
# aspawn-bench from its --plot-data file.
#
#   gnuplot -e "datadir='bench/results'; out='bench/results/responsiveness.png'" bench/plot-responsiveness.gp
#
# datadir/plot-responsiveness.tmp, four blocks, each starting with a line
# naming the columns (in_flight, then the contenders; "?" = missing):
#   index 0, 1  p99 lateness of the launching thread's 1 ms timer (us) for
#               exit0, /bin/true; column 2 is the bystander process (the
#               median of its p99 over the contenders' batches)
#   index 2, 3  p99 time inside the launch call (us) for exit0, /bin/true

if (!exists("datadir")) datadir = "bench/results"
if (!exists("out")) out = datadir . "/responsiveness.png"

f = datadir . "/plot-responsiveness.tmp"

set terminal pngcairo size 1600,1100 font ",10" noenhanced
set output out
set datafile missing "?"
set logscale x 2
set logscale y
set grid xtics ytics
set xlabel "children in flight"
set key outside right top vertical autotitle columnheader
set style data linespoints
# A contender keeps its colour in every panel (line types 1-7 of the
# default colour sequence; the bystander is the black dashed line).

set multiplot layout 2,2 title "aspawn-bench responsiveness (p99 over the pooled samples; log scales)"

set title "exit0: 1 ms timer lateness p99 on the launching thread"
set ylabel "us late (lower is better)"
plot f index 0 using 1:2 with lines dt 2 lw 2 lc rgb "black", \
     for [c=3:*] f index 0 using 1:c lt (c - 2) pt 7

set title "/bin/true: 1 ms timer lateness p99 on the launching thread"
plot f index 1 using 1:2 with lines dt 2 lw 2 lc rgb "black", \
     for [c=3:*] f index 1 using 1:c lt (c - 2) pt 7

set title "exit0: time inside the launch call, p99"
set ylabel "us (lower is better)"
plot for [c=2:*] f index 2 using 1:c lt (c - 1) pt 7

set title "/bin/true: time inside the launch call, p99"
plot for [c=2:*] f index 3 using 1:c lt (c - 1) pt 7

unset multiplot
