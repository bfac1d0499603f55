module patron/bench/pam_depstub

go 1.22
