"""device.machine: tegrastats parsing on real sample lines, /proc figures, the power mode from nvpmodel or its
files, and probes that are absent (not errors) where their tool is missing."""
import time

from device.machine import (NvmlMonitor, TegrastatsMonitor, mem_available_mb, nvml_gpu_name, parse_meminfo,
                            parse_nvpmodel_conf, parse_nvpmodel_query, parse_tegrastats, platform_info, power_mode,
                            process_rss_mb, process_started_at)

# The line from REFERENCE.md (a TX1 on JetPack 4.6.1), and a Xavier NX line of JetPack 5 (other rails, mW units).
TX1_LINE = ("RAM 330/3964MB (lfb 1x4MB) SWAP 0/1982MB (cached 0MB) CPU [12%@102,off,3%@102,1%@102] EMC_FREQ 0% "
            "GR3D_FREQ 45% PLL@22C CPU@24.5C PMIC@100C GPU@22.5C AO@29.5C thermal@23.75C POM_5V_IN 933/933 "
            "POM_5V_GPU 0/0 POM_5V_CPU 79/79")
NX_LINE = ("RAM 2345/7771MB (lfb 1x1MB) SWAP 0/3885MB (cached 0MB) CPU [5%@1190,2%@1190,0%@1190,1%@1190,off,off] "
           "EMC_FREQ 2%@1600 GR3D_FREQ 0%@306 AUX@36.5C CPU@38C thermal@37.45C AO@37C GPU@36.5C PMIC@50C "
           "VDD_IN 4321mW/4321mW VDD_CPU_GPU_CV 412mW/412mW VDD_SOC 1234mW/1234mW")


def test_parse_tegrastats_tx1_line():
    parsed = parse_tegrastats(TX1_LINE)
    assert parsed["ram_used_mb"] == 330 and parsed["ram_total_mb"] == 3964
    assert parsed["cpu_percent"] == [12, None, 3, 1]
    assert parsed["gpu_percent"] == 45 and parsed["emc_percent"] == 0
    assert parsed["temperatures_c"]["GPU"] == 22.5 and parsed["temperatures_c"]["CPU"] == 24.5
    assert parsed["power_mw"]["POM_5V_IN"] == (933, 933) and parsed["power_mw"]["POM_5V_CPU"] == (79, 79)


def test_parse_tegrastats_jetpack5_line():
    parsed = parse_tegrastats(NX_LINE)
    assert parsed["ram_used_mb"] == 2345 and parsed["gpu_percent"] == 0
    assert parsed["power_mw"]["VDD_IN"] == (4321, 4321)
    assert parsed["temperatures_c"]["CPU"] == 38.0
    assert parse_tegrastats("garbage") == {}


def test_tegrastats_monitor_is_absent_without_tegrastats():
    assert TegrastatsMonitor(command="/nonexistent/tegrastats").start() is False


def test_process_figures():
    assert 5 < process_rss_mb() < 10000
    assert abs(process_started_at() - time.time()) < 3600
    assert parse_meminfo("MemTotal:  2048 kB\nMemAvailable:   1024 kB\n") == {"MemTotal": 2.0, "MemAvailable": 1.0}


def test_power_mode_from_nvpmodel_or_its_files(tmp_path):
    assert parse_nvpmodel_query("NVPM WARN: fan mode is not set!\nNV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n") == \
        {"name": "MAXN", "id": 0}
    assert parse_nvpmodel_query("nvpmodel: command not found") is None
    conf = tmp_path / "nvpmodel.conf"
    conf.write_text("< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n< POWER_MODEL ID=1 NAME=MODE_10W >\n"
                    "< PM_CONFIG DEFAULT=1 >\n")
    assert parse_nvpmodel_conf(conf.read_text()) == {"modes": {0: "MAXN", 1: "MODE_10W"}, "default": 1}
    status = tmp_path / "status"
    status.write_text("pmode:0000 fmode:quiet\n")
    missing = ("/nonexistent/nvpmodel", "-q")
    assert power_mode(missing, str(conf), str(status)) == {"name": "MAXN", "id": 0, "source": str(status)}
    assert power_mode(missing, str(conf), str(tmp_path / "none"))["id"] == 1
    assert power_mode(missing, str(tmp_path / "none"), str(status)) is None
    assert power_mode(("sh", "-c", "printf 'NV Power Mode: 15W\\n2\\n'"))["name"] == "15W"


def test_platform_info_names_this_machine():
    info = platform_info()
    assert info["cpus"] >= 1 and info["python"].count(".") == 2 and isinstance(info["jetson"], bool)
    assert mem_available_mb() is None or mem_available_mb() > 0


def test_nvml_is_absent_not_an_error_without_a_gpu():
    monitor = NvmlMonitor()
    if monitor.start():  # a machine with a GPU and nvidia-ml-py: real figures
        try:
            assert monitor.sample()["gpu_mem_total_mb"] > 0
        finally:
            monitor.close()
    else:
        assert monitor.sample() == {} and nvml_gpu_name() is None
