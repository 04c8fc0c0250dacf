# A STAND-IN for Vagrant's configuration API, for tests only: there is no
# Vagrant and no hypervisor on the CI machine. It implements just enough of
# `Vagrant.configure("2") { |config| ... }` (config.vm.box, .synced_folder,
# .provider, .define, .network, .hostname, .provision) to load the repo's
# Vagrantfile with real Ruby and print, as JSON, what Vagrant would be asked to
# build: the box, each provider's settings, each machine with its networks,
# and every provisioner. Anything else the Vagrantfile calls fails loudly
# (NoMethodError), so the stand-in cannot hide a typo.
#
#   ruby tests/playbooks/vagrant_standin.rb path/to/Vagrantfile
require "json"

class StandinProvider
  attr_reader :settings

  def initialize
    @settings = {}
  end

  %w[memory cpus linked_clone].each do |key|
    define_method("#{key}=") { |value| @settings[key] = value }
  end
end

class StandinVM
  attr_reader :record

  def initialize(record)
    @record = record
  end

  def box=(value)
    @record["box"] = value
  end

  def hostname=(value)
    @record["hostname"] = value
  end

  def synced_folder(src, dest, **opts)
    (@record["synced_folders"] ||= []) << { "src" => src, "dest" => dest, "opts" => opts }
  end

  def network(type, **opts)
    (@record["networks"] ||= []) << { "type" => type.to_s, "opts" => opts }
  end

  def provision(*args, **opts)
    (@record["provisioners"] ||= []) << { "args" => args.map(&:to_s), "opts" => opts }
  end

  def provider(name)
    provider = StandinProvider.new
    yield provider if block_given?
    ((@record["providers"] ||= {})[name.to_s] ||= {}).merge!(provider.settings)
  end

  def define(name)
    machine = StandinConfig.new({ "name" => name.to_s })
    yield machine if block_given?
    (@record["machines"] ||= []) << machine.vm.record
  end
end

class StandinConfig
  attr_reader :vm

  def initialize(record)
    @vm = StandinVM.new(record)
  end
end

module Vagrant
  @configs = []

  class << self
    attr_reader :configs

    def configure(version)
      raise ArgumentError, "stand-in knows configuration version 2 only, got #{version.inspect}" unless version == "2"
      config = StandinConfig.new({})
      yield config
      @configs << config.vm.record
    end
  end
end

begin
  load ARGV.fetch(0)
rescue ArgumentError => e
  warn "Vagrantfile: #{e.message}"
  exit 1
end
puts JSON.generate(Vagrant.configs)
